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

from datasite.contract.job import JobSpec


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


def build_context(
    frame: Any,
    *,
    epsilon: float,
    delta: float = 0.0,
    queries: int = 1,
    max_contributions: int = 1,
    max_length: int | None = None,
) -> Any:
    """The OpenDP Context over ``frame`` (pandas or Polars, eager or lazy) for a budget.

    The one definition for the site's releaser and the kit's ``local_context``: the
    privacy loss is ``epsilon`` (or ``(epsilon, delta)``), split evenly over ``queries``;
    the privacy unit is ``max_contributions`` rows per person; ``max_length``, the public
    bound on the row count that sums and means need, defaults to ``rows_bound``.
    """
    import opendp.prelude as dp
    import polars as pl

    dp.enable_features("contrib")
    if queries < 1 or max_contributions < 1:
        raise ValueError("queries and max_contributions must be at least 1")
    if isinstance(frame, pl.LazyFrame):
        lazy = frame
    elif isinstance(frame, pl.DataFrame):
        lazy = frame.lazy()
    else:
        lazy = pl.from_pandas(frame).lazy()
    rows = lazy.select(pl.len()).collect().item()
    if max_length is None:
        max_length = rows_bound(rows)
    elif rows > max_length:
        raise ValueError(f"the data has more rows than max_length={max_length}")
    loss = dp.loss_of(epsilon=epsilon, delta=delta) if delta > 0 else dp.loss_of(epsilon=epsilon)
    return dp.Context.compositor(
        data=lazy,
        privacy_unit=dp.unit_of(contributions=max_contributions),
        privacy_loss=loss,
        split_evenly_over=queries,
        margins=[dp.polars.Margin(max_length=max_length)],
    )


def function_arguments(inputs: dict[str, Any], spec: JobSpec) -> dict[str, Any]:
    """Keyword arguments for the submitted function, by argument name.

    For a raw-data (``MECHANISM``) request these are its tables, as loaded; for a
    data-blind one, the proxies the sandbox runner built (``researcher_kit.blind``),
    which hold no data. A fresh dict each call, so one call cannot rebind another's.
    A run given run arguments (``datasite.contract.run_args``) also passes them as
    ``run_args``.
    """
    if spec.run_args is None:
        return dict(inputs)
    from datasite.contract.run_args import ARGUMENT_NAME, decode_run_args

    return {**inputs, ARGUMENT_NAME: decode_run_args(spec.run_args)}
