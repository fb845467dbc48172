"""What the trusted harnesses inside the sandbox share, and what the kit mirrors.

A harness (see ``datasite.execution.harness``) reports extra information through
``current_report()``: ``details`` (any JSON) becomes ``JobResult.harness_report`` and
``spend`` (JSON dicts, one per instrumented DP measurement) becomes ``JobResult.spend``.
``function_arguments`` builds the arguments a submitted function receives, so a dry-run
sees what a real run sees; ``build_context`` and ``rows_bound`` are the one definition
of the OpenDP Context a Context request is bound to (the kit's ``local_context`` uses
them too, so noise scales on the mock match the site's).
"""

from __future__ import annotations

import math
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from datasite.contract.job import JobSpec, RequestKind


@dataclass
class HarnessReport:
    """What a harness reports besides the output (see the module docstring)."""

    details: dict[str, Any] = field(default_factory=dict)
    spend: list[dict[str, Any]] = field(default_factory=list)


_report: ContextVar[HarnessReport] = ContextVar("datasite_harness_report")


def current_report() -> HarnessReport:
    """The report of the run in progress (a fresh, unattached one outside a run)."""
    try:
        return _report.get()
    except LookupError:
        report = HarnessReport()
        _report.set(report)
        return report


def start_report() -> HarnessReport:
    """Attach a fresh report; the runner calls this before the harness."""
    report = HarnessReport()
    _report.set(report)
    return report


def rows_bound(rows: int) -> int:
    """A public upper bound on the row count: rounded up to one significant digit.

    The Context needs ``max_length`` for sums and means; rounding keeps the exact
    count out of the (public) domain descriptor.

    >>> [rows_bound(n) for n in (0, 7, 2000, 2345, 999_999)]
    [1, 7, 2000, 3000, 1000000]
    """
    if rows <= 1:
        return 1
    step = 10 ** int(math.floor(math.log10(rows)))
    return int(math.ceil(rows / step) * step)


def build_context(frame: Any, spec: JobSpec) -> Any:
    """The OpenDP Context a CONTEXT request receives, bound to ``frame`` and the budget."""
    import opendp.prelude as dp
    import polars as pl

    dp.enable_features("contrib")
    lazy = frame.lazy() if isinstance(frame, pl.DataFrame) else pl.from_pandas(frame).lazy()
    rows = frame.height if isinstance(frame, pl.DataFrame) else len(frame)
    return dp.Context.compositor(
        data=lazy,
        privacy_unit=dp.unit_of(contributions=spec.context.max_contributions),
        privacy_loss=dp.loss_of(epsilon=spec.epsilon, delta=spec.delta or None),
        split_evenly_over=spec.context.queries,
        margins=[dp.polars.Margin(max_length=rows_bound(rows))],
    )


def function_arguments(inputs: dict[str, Any], spec: JobSpec) -> dict[str, Any]:
    """Keyword arguments for the submitted function: tables, or one Context."""
    if spec.kind is RequestKind.CONTEXT:
        if len(inputs) != 1:
            raise ValueError("A Context request takes exactly one input table.")
        ((name, frame),) = inputs.items()
        return {name: build_context(frame, spec)}
    return dict(inputs)
