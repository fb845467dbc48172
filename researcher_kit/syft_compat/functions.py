"""``sy.syft_function`` and ``sy.syft_function_single_use``: a function becomes a DP request.

The decorators return a ``SyftFunction``, a ``researcher_kit.request.DPRequest`` that also
remembers PySyft's input and output policies. Its ``.code`` is the function's source
without the decorator line, which is what the site stores and runs.

Budget: declare ``epsilon=`` (and ``delta=``, ``mechanisms=``) on the decorator. PySyft
has no such argument, so when it is left out the spend is measured on the mock at
submission, and the measurement becomes the declaration the reviewer sees:

1. if it uses the kit (``researcher_kit`` in its source), it runs once locally under
   ``researcher_kit.dp.track()``, which counts the kit's own DP helpers exactly;
2. if that saw nothing (raw OpenDP or diffprivlib calls, as in the PySyft tutorial), the
   site's policy checker dry-runs it on the mock with OpenDP and diffprivlib instrumented
   (``/precheck``, nothing stored) and its measured epsilon (else the epsilon the code's
   constants imply) is declared.

If neither finds a DP release, submission stops and asks for ``epsilon=``.

>>> @syft_function_single_use(df=asset, epsilon=1.0)  # doctest: +SKIP
... def mean_age(df):
...     return rk.dp.mean(df["age"], bounds=(18, 90), epsilon=1.0)
"""

from __future__ import annotations

import html
import inspect
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from researcher_kit.request import DPRequest
from researcher_kit.syft_compat.views import unwrap_asset

# Declared only to ask the site for its measurement; never submitted.
PROVISIONAL_EPSILON = 1.0


class ExactMatch:
    """Input policy: the function runs on exactly these assets (``argument=asset``)."""

    def __init__(self, **assets: Any) -> None:
        if not assets:
            raise ValueError("ExactMatch needs at least one argument=asset.")
        self.assets = assets


class OutputPolicyExecuteCount:
    """Output policy: the approved function may run ``limit`` times."""

    def __init__(self, limit: int = 1) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1.")
        self.limit = limit


class SingleExecutionExactOutput(OutputPolicyExecuteCount):
    """Output policy: the approved function runs once; its output can be fetched again."""

    def __init__(self) -> None:
        super().__init__(limit=1)


@dataclass
class SyftFunction(DPRequest):
    """A function bound to assets, with its input/output policies and declared budget."""

    input_policy: ExactMatch | None = None
    output_policy: OutputPolicyExecuteCount | None = None
    kind: str = "mechanism"  # PySyft's style: the function receives the table (raw data)

    @property
    def code(self) -> str:
        """The source the site will store and run (no decorator)."""
        return self.source

    @property
    def service_func_name(self) -> str:
        return self.name

    def declare_budget(self) -> None:
        """Make sure an epsilon is declared, measuring it on the mock if needed."""
        if self.epsilon is None and "researcher_kit" in self.source:
            # The site runs the source alone, so kit helpers are imported in it; only then
            # can a local run under dp.track() count anything.
            named = bool(self.mechanisms)
            trial = self.run_on_mock(check=False)
            if not named:  # name the helpers as the checker's allowlist does
                self.mechanisms = sorted({f"researcher_kit.dp.{e.helper}" for e in trial.spend})
        if self.epsilon is None:
            self._measure_on_site()
        if self.epsilon is None:
            raise ValueError(
                f"{self.name}: no DP release was measured on the mock, so the privacy loss "
                "is unknown. Declare it: @sy.syft_function_single_use(..., epsilon=1.0)."
            )

    def _measure_on_site(self) -> None:
        """Adopt the epsilon the site's instrumented dry-run measures on the mock."""
        from datasite.client.records import report_object

        session = next(iter(self.bindings.values()))._session
        provisional = replace(self, epsilon=PROVISIONAL_EPSILON)
        report = report_object(session.post("/precheck", json=provisional.payload(project="-")))
        budget = report.budget if report is not None else None
        if budget is None:
            return
        measured = budget.measured_epsilon
        if measured is None:
            measured = budget.static_epsilon
        if measured:
            self.epsilon = measured
            self.delta = max(self.delta, budget.measured_delta or 0.0)
            if not self.mechanisms:
                self.mechanisms = sorted({m.name for m in budget.mechanisms})

    def __repr__(self) -> str:
        declared = "measured at submission" if self.epsilon is None else f"{self.epsilon:g}"
        return f"<SyftFunction {self.name} on {self.dataset}: epsilon {declared}>"

    def _repr_html_(self) -> str:
        bound = ", ".join(f"{arg}={a.dataset}/{a.name}" for arg, a in self.bindings.items())
        declared = "measured at submission" if self.epsilon is None else f"{self.epsilon:g}"
        return (
            f"<h4>Syft function <code>{html.escape(self.name)}</code></h4>"
            f"<p>inputs {html.escape(bound)} · runs {self.runs} · epsilon {declared}, "
            f"delta {self.delta:g}</p><pre>{html.escape(self.code)}</pre>"
        )


def syft_function(
    input_policy: ExactMatch | None = None,
    output_policy: OutputPolicyExecuteCount | None = None,
    *,
    epsilon: float | None = None,
    delta: float = 0.0,
    mechanisms: list[str] | None = None,
    share_results_with_owner: bool = False,
    worker_pool_name: str | None = None,
) -> Callable[[Callable[..., Any]], SyftFunction]:
    """Declare a function for the site: ``input_policy=ExactMatch(df=asset)``.

    ``share_results_with_owner`` and ``worker_pool_name`` are accepted for PySyft
    compatibility; the owner always sees the outputs and the site picks the worker.
    """
    if not isinstance(input_policy, ExactMatch):
        raise TypeError("Give input_policy=sy.ExactMatch(argument=asset, ...).")
    runs = (output_policy or SingleExecutionExactOutput()).limit

    def wrap(fn: Callable[..., Any]) -> SyftFunction:
        parameters = inspect.signature(fn).parameters
        unknown = sorted(set(input_policy.assets) - set(parameters))
        if unknown:
            raise TypeError(f"{fn.__name__}() has no argument {', '.join(unknown)} to bind.")
        return SyftFunction(
            fn=fn,
            bindings={arg: unwrap_asset(a) for arg, a in input_policy.assets.items()},
            epsilon=epsilon,
            delta=delta,
            mechanisms=list(mechanisms or []),
            runs=runs,
            input_policy=input_policy,
            output_policy=output_policy,
        )

    return wrap


def syft_function_single_use(
    *,
    epsilon: float | None = None,
    delta: float = 0.0,
    mechanisms: list[str] | None = None,
    share_results_with_owner: bool = False,
    worker_pool_name: str | None = None,
    **assets: Any,
) -> Callable[[Callable[..., Any]], SyftFunction]:
    """``syft_function`` with ``ExactMatch(**assets)`` and a single execution."""
    return syft_function(
        ExactMatch(**assets),
        SingleExecutionExactOutput(),
        epsilon=epsilon,
        delta=delta,
        mechanisms=mechanisms,
        share_results_with_owner=share_results_with_owner,
        worker_pool_name=worker_pool_name,
    )
