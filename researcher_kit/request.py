"""Turning a Python function into a DP code request, and trying it on the mock first.

>>> import researcher_kit as rk
>>> @rk.dp_request(asset=pings, epsilon=1.0)  # doctest: +SKIP
... def mean_age(df):
...     return rk.dp.mean(df["age"], bounds=(18, 90), epsilon=1.0)
>>> mean_age.run_on_mock()  # doctest: +SKIP
"""

from __future__ import annotations

import ast
import html
import inspect
import sys
import textwrap
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from researcher_kit.client import Asset


#: Notebook names the site's sandbox provides itself (``datasite.execution.job_process``).
SITE_PROVIDED = frozenset({"display"})


def function_source(fn: Callable[..., Any]) -> str:
    """The source of ``fn`` without its decorators, as the site will run it.

    The site runs the function on its own, away from the notebook, so the modules it
    reaches through the notebook's globals (``rk.dp.mean`` after ``import researcher_kit
    as rk``) come along as import lines above it; the checker reviews those too.

    >>> import numpy as np
    >>> def spread(df):
    ...     return np.ptp(df["age"])
    >>> print(function_source(spread), end="")
    import numpy as np
    def spread(df):
        return np.ptp(df["age"])
    """
    source = textwrap.dedent(inspect.getsource(fn))
    tree = ast.parse(source)
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef))
    lines = source.splitlines()
    body = "\n".join(lines[node.lineno - 1 : node.end_lineno]) + "\n"
    imports = global_imports(fn, node)
    return "".join(f"{line}\n" for line in imports) + body


def global_imports(fn: Callable[..., Any], node: ast.AST) -> list[str]:
    """Import lines for the notebook globals ``fn`` uses (modules, importable functions and
    classes); a global the site cannot import (a notebook's own constant or helper) is
    refused with a message saying what to do."""
    names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
    lines, stranded = [], []
    for name in sorted(names & _global_loads(fn.__code__) - SITE_PROVIDED):
        if name not in fn.__globals__:
            continue  # a builtin, or a name that fails in the notebook too
        value = fn.__globals__[name]
        if isinstance(value, types.ModuleType):
            module = value.__name__
            lines.append(f"import {module}" if module == name else f"import {module} as {name}")
        elif _importable(value):
            alias = "" if value.__qualname__ == name else f" as {name}"
            lines.append(f"from {value.__module__} import {value.__qualname__}{alias}")
        else:
            stranded.append(name)
    if stranded:
        raise ValueError(
            f"{fn.__name__}() uses {', '.join(stranded)} from your notebook, and the site runs "
            "the function on its own: define them inside the function or pass them as "
            "arguments."
        )
    return lines


def _global_loads(code: types.CodeType) -> set[str]:
    """Names a code object (and the comprehensions and functions inside it) looks up
    globally or as attributes; parameters and locals are not among them."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_loads(const)
    return names


def _importable(value: Any) -> bool:
    module = getattr(value, "__module__", None)
    qualname = getattr(value, "__qualname__", "")
    if not module or module == "__main__" or "." in qualname or module not in sys.modules:
        return False
    return getattr(sys.modules[module], qualname, None) is value


@dataclass
class MockRun:
    """What a run on the mock gave: outputs, the spend the kit measured, the site's report."""

    outputs: Any
    spend: Any
    report: Any = None

    def _repr_html_(self) -> str:
        parts = [f"<h4>Run on mock</h4><pre>{html.escape(repr(self.outputs))[:5000]}</pre>"]
        if self.spend is not None and hasattr(self.spend, "_repr_html_"):
            parts.append(self.spend._repr_html_())
        if self.report is not None and hasattr(self.report, "to_html"):
            parts.append(self.report.to_html())
        return "".join(parts)


@dataclass
class DPRequest:
    """A function bound to assets with its declared privacy loss, ready to submit."""

    fn: Callable[..., Any]
    bindings: dict[str, Asset]
    epsilon: float | None = None
    delta: float = 0.0
    mechanisms: list[str] = field(default_factory=list)
    kind: str = "blind"
    queries: int = 1
    max_contributions: int = 1
    runs: int = 1

    @property
    def name(self) -> str:
        return self.fn.__name__

    @property
    def source(self) -> str:
        return function_source(self.fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    @property
    def dataset(self) -> str:
        datasets = {asset.dataset for asset in self.bindings.values()}
        if len(datasets) != 1:
            raise ValueError("A request binds assets of exactly one dataset.")
        return datasets.pop()

    def _mock_arguments(self, epsilon: float) -> dict[str, Any]:
        """What the function receives on the mock: as on the site, blind unless raw."""
        if self.kind == "mechanism":
            return {arg: asset.mock.copy() for arg, asset in self.bindings.items()}
        from researcher_kit.blind import local_frames

        return local_frames(
            {arg: asset.mock for arg, asset in self.bindings.items()},
            epsilon,
            self.delta,
            context=self.kind == "context",
            queries=self.queries,
            max_contributions=self.max_contributions,
        )

    def run_on_mock(self, check: bool = True) -> MockRun:
        """Run on the mock as the site will, measure the spend, and fetch the site's report.

        When no epsilon was declared, the measured spend becomes the declaration.
        """
        from researcher_kit import dp

        with dp.track() as spend:
            outputs = self.fn(**self._mock_arguments(self.epsilon or 1.0))
        outputs = as_released(outputs)
        if self.epsilon is None and spend.epsilon > 0:
            self.epsilon, self.delta = spend.epsilon, max(self.delta, spend.delta)
        if not self.mechanisms:
            # Declared by the helpers called, the names the policy's allowlist speaks.
            self.mechanisms = sorted({f"researcher_kit.dp.{e.helper}" for e in spend.entries})
        report = None
        if check:
            session = next(iter(self.bindings.values()))._session
            from datasite.client.records import report_object

            report = report_object(session.post("/precheck", json=self.payload(project="-")))
        return MockRun(outputs=outputs, spend=spend, report=report)

    def payload(self, project: str, description: str = "") -> dict[str, Any]:
        if self.epsilon is None:
            raise ValueError(
                f"{self.name}: declare epsilon=... or call run_on_mock() to measure it."
            )
        return {
            "project": project,
            "dataset": self.dataset,
            "entry": self.name,
            "source": self.source,
            "bindings": {arg: asset.name for arg, asset in self.bindings.items()},
            "kind": self.kind,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "mechanisms": self.mechanisms,
            "context": {"queries": self.queries, "max_contributions": self.max_contributions},
            "description": description or (inspect.getdoc(self.fn) or ""),
            "runs": self.runs,
        }


def as_released(value: Any) -> Any:
    """``value`` after the trip a real run's output makes (the result codec, under the
    site's default output cap): a dry-run that passes must encode on the real run too, so
    an output the site could not release fails here, with the same ``UnsupportedResult``
    or ``OutputTooLarge``, before any budget is spent.

    >>> as_released({"n": 3})
    {'n': 3}
    """
    from datasite.contract.job import Limits
    from datasite.contract.results import decode_result, encode_result

    return decode_result(*encode_result(value, Limits().max_output_bytes))


def dp_request(
    asset: Asset | None = None,
    *,
    assets: dict[str, Asset] | None = None,
    epsilon: float | None = None,
    delta: float = 0.0,
    mechanisms: list[str] | None = None,
    context: bool = False,
    raw: bool = False,
    queries: int = 1,
    max_contributions: int = 1,
    runs: int = 1,
) -> Callable[[Callable[..., Any]], DPRequest]:
    """Declare a function as a DP request on ``asset`` (bound to its first argument).

    By default the request is *data-blind*: the function receives a blind frame (column
    names and types, no rows), and each ``rk.dp`` helper it calls on it is released by
    the site's releaser within ``epsilon``: DP by construction, so the checker can pass
    it and a policy may approve it automatically. With ``context=True`` it receives an
    OpenDP Context instead, whose ``query()...release()`` calls the site makes for it
    (``epsilon`` split evenly over ``queries``). With ``raw=True`` it receives the
    table itself (PySyft's style): a person must always review such a request.

    >>> import pandas as pd
    >>> from types import SimpleNamespace
    >>> mock = pd.DataFrame({"age": [30, 40, 50, 60] * 100})
    >>> pings = SimpleNamespace(name="pings", dataset="Pings", mock=mock)  # an Asset's parts
    >>> @dp_request(asset=pings, epsilon=0.5)
    ... def mean_age(df):
    ...     from researcher_kit import dp
    ...     return dp.mean(df["age"], bounds=(18, 90), epsilon=0.5)
    >>> mean_age.kind, 18 <= mean_age.run_on_mock(check=False).outputs <= 90
    ('blind', True)
    """
    if context and raw:
        raise ValueError("a request is either context=True or raw=True, not both")

    def wrap(fn: Callable[..., Any]) -> DPRequest:
        bound = dict(assets or {})
        if asset is not None:
            first = next(iter(inspect.signature(fn).parameters))
            bound[first] = asset
        if not bound:
            raise ValueError("dp_request needs asset= or assets={argument: asset}.")
        return DPRequest(
            fn=fn,
            bindings=bound,
            epsilon=epsilon,
            delta=delta,
            mechanisms=list(mechanisms or []),
            kind="context" if context else "mechanism" if raw else "blind",
            queries=queries,
            max_contributions=max_contributions,
            runs=runs,
        )

    return wrap
