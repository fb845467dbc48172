"""What a request computes and releases, in words a data steward reads before the code.

The summary comes from two places the researcher cannot bend: the checker's report
(what the site's releaser released on the mock, and at what cost) and the submitted
source, read as a syntax tree (which column each ``rk.dp`` helper reads, its bounds and
epsilon). Nothing is run and nothing comes from the private rows.

>>> source = '''
... def mean_age(df):
...     from researcher_kit import dp
...     return dp.mean(df["age"], bounds=(18, 90), epsilon=0.5)
... '''
>>> report = {"budget": {"mechanisms": [{"name": "mean (laplace)", "invocations": 1,
...                                      "epsilon_total": 0.5}]}}
>>> print(plain_summary("blind", source, report, 0.5, 0.0, {"df": "patients"})[0])
Data-blind: the code never sees a row. The site's releaser releases a noisy mean of column \
`age`, clamped to 18-90, epsilon 0.5.
"""

from __future__ import annotations

import ast
import math
from typing import Any

#: Words on the request page with a one-line explanation (``<abbr title=...>``).
GLOSSARY = {
    "epsilon": (
        "The privacy loss a release may cause: smaller is more private. Each request spends "
        "some of the researcher's budget on the dataset."
    ),
    "delta": (
        "A small probability that the epsilon guarantee does not hold; 0 for pure "
        "differential privacy."
    ),
    "sensitivity": (
        "How much one person can change the computed value before noise is added; the "
        "noise is scaled to it."
    ),
    "post-processing": (
        "Computed only from values that were already released with noise: it costs no "
        "extra privacy."
    ),
    "audit bound": (
        "An empirical lower bound on epsilon from running the code many times on "
        "neighbouring mock tables; far above the declared epsilon means the code leaks "
        "more than it says."
    ),
    "raw": "Computed from the private rows without noise: it may reveal individuals.",
}

#: What each ``rk.dp`` helper releases, in words.
RELEASES = {
    "count": "a noisy count of rows",
    "sum": "a noisy sum",
    "mean": "a noisy mean",
    "quantile": "a noisy quantile",
    "histogram": "a noisy histogram",
    "fit_model": "a model trained with differential privacy",
    "noisy_column": "a noisy copy of a column",
    "synthesize": "a DP synthetic table (MST or AIM)",
    "ctx_count": "a noisy count of rows",
    "ctx_sum": "a noisy sum",
    "ctx_mean": "a noisy mean",
    "ctx_quantile": "a noisy quantile",
    "ctx_histogram": "a noisy histogram",
}


def for_people(value: Any) -> str:
    """A number rounded for people: three significant digits, no float noise.

    >>> for_people(0.49999999999999994), for_people(1.0999999999999999), for_people(12.3456)
    ('0.5', '1.1', '12.3')
    >>> for_people(None), for_people(3), for_people(0.000123456)
    ('—', '3', '0.000123')
    """
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int) or not math.isfinite(value):
        return str(value)
    return f"{value:.3g}" if abs(value) < 1e6 else f"{value:,.0f}"


def _constant(node: ast.AST | None) -> Any:
    try:
        return ast.literal_eval(node) if node is not None else None
    except ValueError:
        return None


def _column(node: ast.AST | None) -> str | None:
    """``df["age"]`` or ``"age"``: the column a helper reads."""
    if isinstance(node, ast.Subscript):
        value = _constant(node.slice)
        if isinstance(value, str):
            return value
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return ", ".join(value)
    value = _constant(node)
    return value if isinstance(value, str) else None


def _is_dp(node: ast.AST) -> bool:
    """``dp`` or ``rk.dp`` / ``researcher_kit.dp``: the kit's DP helpers."""
    if isinstance(node, ast.Name):
        return node.id == "dp"
    return isinstance(node, ast.Attribute) and node.attr == "dp"


def helper_calls(source: str) -> list[str]:
    """One phrase per ``rk.dp`` helper call in ``source``, in source order.

    >>> helper_calls('dp.ctx_mean(ctx, "bmi", bounds=(15.0, 45.0))\\ndp.ctx_count(ctx)')
    ['a noisy mean of column `bmi`, clamped to 15-45', 'a noisy count of rows']
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    phrases = []
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    for call in sorted(calls, key=lambda n: (n.lineno, n.col_offset)):
        func = call.func
        if not isinstance(func, ast.Attribute) or not _is_dp(func.value):
            continue  # ``np.mean`` is not a release; ``dp.mean`` / ``rk.dp.mean`` are
        name = func.attr
        if name not in RELEASES:
            continue
        keywords = {k.arg: k.value for k in call.keywords if k.arg}
        args = call.args[1:] if name.startswith("ctx_") else call.args
        phrase = RELEASES[name]
        column = _column(args[0] if args else keywords.get("column"))
        if name == "fit_model":
            target = _column(call.args[2] if len(call.args) > 2 else keywords.get("y"))
            column = _column(call.args[1] if len(call.args) > 1 else keywords.get("X"))
            kind = _constant(call.args[0] if call.args else keywords.get("kind"))
            phrase = f"a {kind.replace('_', ' ')} model" if isinstance(kind, str) else "a model"
            phrase += " trained with differential privacy"
            if column:
                phrase += f" on columns `{column}`"
            if target:
                phrase += f" predicting `{target}`"
            column = None
        elif column and name not in ("count", "ctx_count"):
            phrase += f" of column `{column}`"
        bounds = _constant(keywords.get("bounds"))
        if isinstance(bounds, list | tuple) and len(bounds) == 2:
            phrase += f", clamped to {for_people(bounds[0])}-{for_people(bounds[1])}"
        epsilon = _constant(keywords.get("epsilon"))
        if isinstance(epsilon, int | float) and not isinstance(epsilon, bool):
            phrase += f", epsilon {for_people(epsilon)}"
        phrases.append(phrase)
    return phrases


def _and(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _released(report: dict[str, Any]) -> list[str]:
    """The releaser's ledger as the report keeps it: ``mean (laplace)`` x calls, epsilon."""
    budget = report.get("budget") or {}
    phrases = []
    for m in budget.get("mechanisms") or []:
        if not isinstance(m, dict):
            continue
        calls = m.get("invocations") or 1
        text = f"{m.get('name')}" + (f" × {calls}" if calls > 1 else "")
        if m.get("epsilon_total") is not None:
            text += f", epsilon {for_people(m['epsilon_total'])}"
        phrases.append(text)
    return phrases


def plain_summary(
    kind: str,
    source: str,
    report: dict[str, Any] | None,
    epsilon: float,
    delta: float,
    bindings: dict[str, str],
) -> list[str]:
    """Sentences saying what the request computes and releases, most important first."""
    report = report or {}
    tables = ", ".join(f"`{asset}`" for asset in bindings.values()) or "its table"
    calls = helper_calls(source)
    total = f"epsilon {for_people(epsilon)}" + (f", delta {delta:.2g}" if delta else "")
    if kind in ("blind", "context"):
        lead = (
            "Data-blind: the code never sees a row."
            if kind == "blind"
            else "Context request: the code only sees an OpenDP Context, never a row."
        )
        released = calls or _released(report)
        if released:
            sentences = [f"{lead} The site's releaser releases {_and(released)}."]
        else:
            sentences = [f"{lead} It asks the site's releaser for DP releases."]
        sentences.append(
            f"Everything it returns is post-processing of those releases. It declares {total}"
            " in all; the releaser refuses anything beyond that."
        )
        return sentences
    columns = sorted(
        {
            column
            for node in ast.walk(_tree(source))
            if isinstance(node, ast.Subscript) and (column := _column(node))
        }
    )
    reads = f" (columns {', '.join(f'`{c}`' for c in columns)})" if columns else ""
    sentences = [
        f"Reads raw rows: the function receives the private table {tables}{reads} and "
        "returns whatever it computes; any noise is the researcher's own code."
    ]
    if calls:
        sentences.append(f"The code calls {_and(calls)}.")
    outputs = [o for o in report.get("outputs") or [] if isinstance(o, dict)]
    raw = [o for o in outputs if o.get("cls") in ("raw", "unknown")]
    if outputs:
        sentences.append(
            f"It returns {len(outputs)} value{'s' if len(outputs) != 1 else ''}"
            + (
                f", {len(raw)} of which the checker could not show to be private."
                if raw
                else ", each shown private by the checker."
            )
        )
    sentences.append(f"It declares {total}; a person must review it before it runs.")
    return sentences


def _tree(source: str) -> ast.AST:
    try:
        return ast.parse(source)
    except SyntaxError:
        return ast.Module(body=[], type_ignores=[])
