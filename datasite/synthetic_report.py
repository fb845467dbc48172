"""How faithful and how private a synthetic table is: the quality report and the canary test.

Both run on the site, on the real table, and are shown to the dataset's owner only.

**Quality report** (:func:`quality_report`): per-column 1-way total-variation distance
(TVD), mean 2-way TVD over all column pairs (numeric columns cut at the *real* table's
10-quantiles, categoricals as they are), the same 2-way TVD for an independent-marginals
baseline computed in the same run (every column sampled on its own from the real
marginal: it knows nothing about correlations, so a synthesizer must beat it), an ML
utility score (a classifier trained on synthetic rows, tested on held-out real rows,
divided by the same classifier trained on real rows), a 0-100 score, and inline SVG
plots (per-column distribution overlays, correlation heatmaps real vs synthetic).

None of these numbers is DP: every one reads the real table (quantiles, marginals,
correlations, the held-out split). That is why the report is the owner's alone; what a
researcher sees is the synthetic table, which is DP.

**Canary test** (:func:`canary_test`): made-up secret rows are inserted at several
frequencies into a copy of the real table, which is synthesized twice, under DP at the
owner's epsilon and with a huge epsilon (an independent fit, effectively not private);
each secret's replays in each synthetic table are counted.
"""

from __future__ import annotations

import html
import itertools
import math
import secrets
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

#: The epsilon of the "non-DP" comparison fit in the canary test (with the secret
#: column's categories, secrets included, declared public: nothing is thresholded).
NON_DP_EPSILON = 1000.0  # larger ones overflow OpenDP's calibration
#: Insertion counts for the canary secrets (Gretel's video inserts at 1, 5, 10, 50, 100).
CANARY_FREQUENCIES = (1, 5, 10, 50)

SCORE_HOW = (
    "score = 100 * (0.4 * (1 - mean 1-way TVD) + 0.4 * (1 - mean 2-way TVD) "
    "+ 0.2 * min(ML utility, 1)); ML utility counts 0 when no target is given"
)


def _discretize(real: pd.Series, *others: pd.Series, q: int = 10) -> list[pd.Series]:
    """Real and other columns as labels: numerics cut at the real 10-quantiles."""
    if pd.api.types.is_numeric_dtype(real.dtype) and not pd.api.types.is_bool_dtype(real.dtype):
        cuts = np.unique(np.nanquantile(real.astype(float), np.linspace(0, 1, q + 1)[1:-1]))
        bins = np.concatenate([[-np.inf], cuts, [np.inf]])

        def cut(s: pd.Series) -> pd.Series:
            values = pd.to_numeric(s, errors="coerce").astype(float)
            labels = np.searchsorted(bins, values.to_numpy(), side="left")
            return pd.Series(np.where(values.isna(), -1, labels), index=s.index)

        return [cut(real), *(cut(o) for o in others)]
    return [s.astype(object).where(s.notna(), "(missing)").astype(str) for s in (real, *others)]


def _tvd(a: pd.Series, b: pd.Series) -> float:
    p = a.value_counts(normalize=True)
    r = b.value_counts(normalize=True)
    return float(0.5 * p.subtract(r, fill_value=0).abs().sum())


def discretized(real: pd.DataFrame, *others: pd.DataFrame) -> list[pd.DataFrame]:
    """Every table with each column cut as :func:`_discretize` says (real quantiles)."""
    columns = list(real.columns)
    out = [{} for _ in range(1 + len(others))]
    for column in columns:
        parts = _discretize(real[column], *(o[column] for o in others))
        for i, part in enumerate(parts):
            out[i][column] = part.reset_index(drop=True)
    return [pd.DataFrame(d, columns=columns) for d in out]


def tvd_1way(real: pd.DataFrame, synthetic: pd.DataFrame) -> dict[str, float]:
    """Per-column total-variation distance (numerics at the real 10-quantiles)."""
    r, s = discretized(real, synthetic)
    return {c: _tvd(r[c], s[c]) for c in r.columns}


def tvd_2way(real: pd.DataFrame, synthetic: pd.DataFrame) -> float:
    """Mean total-variation distance of all column pairs' joint distributions."""
    r, s = discretized(real, synthetic)
    pairs = list(itertools.combinations(r.columns, 2))
    if not pairs:
        return 0.0
    scores = []
    for a, b in pairs:
        scores.append(_tvd(r[a].astype(str) + "|" + r[b].astype(str),
                           s[a].astype(str) + "|" + s[b].astype(str)))  # fmt: skip
    return float(np.mean(scores))


def independent_baseline(real: pd.DataFrame, rows: int | None = None, seed: int | None = None):
    """Every column sampled independently from its own real marginal (no correlations)."""
    generator = np.random.default_rng(seed)
    n = len(real) if rows is None else rows
    return pd.DataFrame(
        {c: real[c].to_numpy()[generator.integers(0, len(real), n)] for c in real.columns}
    )


def ml_utility(
    real: pd.DataFrame, synthetic: pd.DataFrame, target: str, seed: int = 0
) -> dict[str, float]:
    """Train on synthetic, test on held-out real, against train on real (same model).

    The model is a gradient-boosted classifier (regressor for a numeric target with many
    values) on one-hot categoricals; ``utility`` is synthetic's score over real's
    (accuracy for classes, R^2 clipped at 0 for numbers).
    """
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(real, test_size=0.3, random_state=seed)
    numeric_target = pd.api.types.is_numeric_dtype(real[target].dtype) and (
        real[target].nunique() > 20
    )
    features = [c for c in real.columns if c != target]

    def encode(frame: pd.DataFrame) -> pd.DataFrame:
        out = {}
        for c in features:
            if pd.api.types.is_numeric_dtype(real[c].dtype):
                out[c] = pd.to_numeric(frame[c], errors="coerce").astype(float).to_numpy()
            else:
                cats = pd.Categorical(frame[c].astype(object), categories=_categories(real[c]))
                out[c] = cats.codes.astype(float)
        return pd.DataFrame(out)

    def score(fit_on: pd.DataFrame) -> float:
        fit_on = fit_on.dropna(subset=[target])
        if numeric_target:
            model = HistGradientBoostingRegressor(max_iter=100, random_state=seed)
            model.fit(encode(fit_on), fit_on[target].astype(float))
            return max(0.0, float(model.score(encode(test), test[target].astype(float))))
        y = fit_on[target].astype(str)
        if y.nunique() < 2:  # one class: predict it
            return float((test[target].astype(str) == y.iloc[0]).mean()) if len(y) else 0.0
        model = HistGradientBoostingClassifier(
            max_iter=100, random_state=seed, categorical_features=_categorical_mask(real, features)
        )
        model.fit(encode(fit_on), y)
        return float(model.score(encode(test), test[target].astype(str)))

    on_real, on_synthetic = score(train), score(synthetic)
    return {
        "target": target,
        "train_real_test_real": on_real,
        "train_synthetic_test_real": on_synthetic,
        "utility": on_synthetic / on_real if on_real > 0 else 0.0,
    }


def _categories(series: pd.Series) -> list[Any]:
    return list(pd.unique(series.dropna().astype(object)))[:254]


def _categorical_mask(real: pd.DataFrame, features: list[str]) -> list[bool]:
    return [not pd.api.types.is_numeric_dtype(real[c].dtype) for c in features]


def quality_report(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    *,
    target: str | None = None,
    seed: int | None = None,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The owner's report on ``synthetic`` against ``real`` (see the module doc)."""
    columns = [c for c in real.columns if c in synthetic.columns]
    real, synthetic = real[columns], synthetic[columns]
    one_way = tvd_1way(real, synthetic)
    two_way = tvd_2way(real, synthetic)
    baseline = independent_baseline(real, len(synthetic), seed)
    two_way_baseline = tvd_2way(real, baseline)
    if target is None:
        candidates = [c for c in columns if not pd.api.types.is_numeric_dtype(real[c].dtype)]
        target = candidates[-1] if candidates else None
    utility = ml_utility(real, synthetic, target) if target is not None else None
    mean_1way = float(np.mean(list(one_way.values()))) if one_way else 0.0
    ml = min(utility["utility"], 1.0) if utility else 0.0
    score = 100 * (0.4 * (1 - mean_1way) + 0.4 * (1 - two_way) + 0.2 * ml)
    return {
        "rows": {"real_used": "owner-only", "synthetic": len(synthetic)},
        "columns": columns,
        "tvd_1way": one_way,
        "tvd_1way_mean": mean_1way,
        "tvd_2way": two_way,
        "tvd_2way_independent_baseline": two_way_baseline,
        "beats_independent_baseline": two_way < two_way_baseline,
        "ml_utility": utility,
        "score": round(float(score), 1),
        "score_how": SCORE_HOW,
        "settings": settings or {},
        "touches_real_data": {
            "tvd_1way, tvd_2way": "computed on the real table (its 10-quantiles and "
            "marginals), not DP: shown to the owner only",
            "tvd_2way_independent_baseline": "samples the real table's own marginals, not "
            "DP: owner only",
            "ml_utility": "trains and tests on a split of the real table, not DP: owner only",
            "plots": "real distributions and correlations beside the synthetic ones, not "
            "DP: owner only",
            "synthetic table": "DP at the settings above (the only part researchers see)",
        },
        "svg": {
            "distributions": distributions_svg(real, synthetic),
            "correlations": correlations_svg(real, synthetic),
        },
    }


# -- plots (small inline SVG, no plotting library) ----------------------------------------


def distributions_svg(real: pd.DataFrame, synthetic: pd.DataFrame, width: int = 180) -> str:
    """One small bar chart per column: real (grey) vs synthetic (blue), per bin."""
    r, s = discretized(real, synthetic)
    panels, height, per_row = [], 110, 4
    for k, column in enumerate(r.columns):
        pr = r[column].value_counts(normalize=True)
        ps = s[column].value_counts(normalize=True)
        labels = sorted(set(pr.index) | set(ps.index), key=str)[:20]
        x0, y0 = (k % per_row) * (width + 10), (k // per_row) * (height + 10)
        top = max([*pr.reindex(labels, fill_value=0), *ps.reindex(labels, fill_value=0), 1e-9])
        bar = (width - 10) / max(len(labels), 1)
        name = html.escape(str(column))
        parts = [f'<text x="{x0 + 4}" y="{y0 + 12}" font-size="10">{name}</text>']
        for i, label in enumerate(labels):
            for j, (p, color) in enumerate(((pr, "#999"), (ps, "#3b6fd6"))):
                h = 80 * float(p.get(label, 0)) / top
                x = x0 + 5 + i * bar + j * bar / 2
                parts.append(
                    f'<rect x="{x:.1f}" y="{y0 + 100 - h:.1f}" width="{bar / 2:.1f}" '
                    f'height="{h:.1f}" fill="{color}"/>'
                )
        panels.append("".join(parts))
    rows = math.ceil(len(r.columns) / per_row)
    w, h = per_row * (width + 10), max(rows, 1) * (height + 10) + 14
    legend = (
        f'<text x="4" y="{h - 3}" font-size="10" fill="#999">real</text>'
        f'<text x="40" y="{h - 3}" font-size="10" fill="#3b6fd6">synthetic</text>'
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'role="img" aria-label="distributions">{"".join(panels)}{legend}</svg>'
    )


def _association(frame: pd.DataFrame) -> np.ndarray:
    codes = pd.DataFrame(
        {
            c: frame[c] if pd.api.types.is_numeric_dtype(frame[c]) else pd.factorize(frame[c])[0]
            for c in frame
        }
    )
    matrix = codes.astype(float).corr(method="spearman").to_numpy()
    return np.nan_to_num(matrix)


def correlations_svg(real: pd.DataFrame, synthetic: pd.DataFrame, cell: int = 12) -> str:
    """Two heatmaps side by side: Spearman correlation of the (binned) columns."""
    r, s = discretized(real, synthetic)
    n = len(r.columns)
    parts = []
    for k, (title, frame) in enumerate((("real", r), ("synthetic", s))):
        matrix = _association(frame)
        x0 = k * (n * cell + 20)
        parts.append(f'<text x="{x0}" y="10" font-size="10">{title}</text>')
        for i, j in itertools.product(range(n), range(n)):
            v = float(matrix[i, j])
            fade = int(255 * (1 - min(abs(v), 1)))  # red positive, blue negative
            color = f"rgb(255,{fade},{fade})" if v >= 0 else f"rgb({fade},{fade},255)"
            parts.append(
                f'<rect x="{x0 + j * cell}" y="{14 + i * cell}" width="{cell}" height="{cell}" '
                f'fill="{color}"><title>{html.escape(str(r.columns[i]))} x '
                f"{html.escape(str(r.columns[j]))}: {v:.2f}</title></rect>"
            )
    w, h = 2 * (n * cell + 20), n * cell + 20
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" '
        f'aria-label="correlations">{"".join(parts)}</svg>'
    )


# -- canary test ---------------------------------------------------------------------------


def make_canaries(real: pd.DataFrame, frequencies: Sequence[int] = CANARY_FREQUENCIES):
    """One made-up secret row per frequency: a fresh random token in the first text column.

    Numeric columns take the column's median (so the row is otherwise ordinary); a
    secret is "replayed" when a synthetic row carries its token.
    """
    text = [c for c in real.columns if not pd.api.types.is_numeric_dtype(real[c].dtype)]
    if not text:
        raise ValueError("the canary test needs a text (categorical) column to hold secrets")
    column = text[0]
    base = real.iloc[0].copy()
    for c in real.columns:
        if pd.api.types.is_numeric_dtype(real[c].dtype) and not pd.api.types.is_bool_dtype(
            real[c].dtype
        ):
            base[c] = real[c].median()
    canaries = []
    for frequency in frequencies:
        row = base.copy()
        row[column] = f"SECRET-{secrets.token_hex(4)}"
        canaries.append((row, int(frequency)))
    return column, canaries


def canary_test(
    real: pd.DataFrame,
    synthesize: Callable[[pd.DataFrame, float], pd.DataFrame],
    epsilon: float,
    *,
    non_dp: Callable[[pd.DataFrame, float, str], pd.DataFrame] | None = None,
    frequencies: Sequence[int] = CANARY_FREQUENCIES,
) -> dict[str, Any]:
    """Insert secrets at ``frequencies``, synthesize (DP and non-DP), count the replays.

    ``synthesize(table, epsilon)`` is the owner's synthesizer with its settings (the
    secret column's categories must be discovered under DP, not declared). ``non_dp
    (table, epsilon, column)`` is the comparison fit: by default the same call at
    :data:`NON_DP_EPSILON`.
    """
    column, canaries = make_canaries(real, frequencies)
    rows = [real]
    for row, frequency in canaries:
        rows.append(pd.DataFrame([row] * frequency, columns=real.columns))
    planted = pd.concat(rows, ignore_index=True).astype(real.dtypes.to_dict())
    fits = {
        "dp": synthesize(planted, epsilon),
        "non_dp": (non_dp or (lambda t, e, _: synthesize(t, e)))(planted, NON_DP_EPSILON, column),
    }
    runs = {
        label: {
            row[column]: int((fake[column].astype(str) == row[column]).sum()) for row, _ in canaries
        }
        for label, fake in fits.items()
    }
    return {
        "column": column,
        "epsilon": epsilon,
        "non_dp_epsilon": NON_DP_EPSILON,
        "secrets": [
            {
                "frequency": frequency,
                "replays_dp": runs["dp"][row[column]],
                "replays_non_dp": runs["non_dp"][row[column]],
            }
            for row, frequency in canaries
        ],
        "owner_only": True,
    }
