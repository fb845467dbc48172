"""Harnesses: the trusted code that calls the submitted function inside the sandbox.

A harness is named in ``JobSpec.harness`` as ``"module:function"`` and must live under
``datasite.``, ``policies.`` or ``researcher_kit.`` (``resolve_harness`` refuses the
rest). It runs in the sandboxed child, after the jail is entered, with this signature::

    def harness(fn: Callable, inputs: dict[str, Any], spec: JobSpec) -> Any

- ``fn`` is the submitted entry function; ``inputs`` maps each argument name of
  ``spec.inputs`` to its table, already loaded: a pandas DataFrame for MECHANISM
  requests, a Polars DataFrame for CONTEXT requests (``load_table``).
- The return value is the run's output and goes through ``results.encode_result``.
- Extra information goes into ``current_report()``: ``report.details`` (any JSON)
  becomes ``JobResult.harness_report`` and ``report.spend`` (a list of JSON dicts,
  e.g. one per instrumented DP measurement) becomes ``JobResult.spend``. They are
  delivered even when the harness or the function raises, so a dry-run can report
  what it saw before the failure.
- ``spec.harness_options`` carries the harness's own settings.

Harnesses reuse ``function_arguments`` to build the same arguments the default harness
passes (including the OpenDP Context), so a dry-run sees what a real run sees.

>>> resolve_harness("datasite.execution.harness:call_once").__name__
'call_once'
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import IO, Any

from datasite.execution.job import JobSpec, RequestKind

TRUSTED_HARNESS_PACKAGES = ("datasite", "policies", "researcher_kit")
Harness = Callable[[Callable[..., Any], dict[str, Any], JobSpec], Any]


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


def resolve_harness(path: str) -> Harness:
    """Import a trusted harness by ``"module:function"``; refuse anything else."""
    module_name, _, attr = path.partition(":")
    top = module_name.split(".", 1)[0]
    if not attr or top not in TRUSTED_HARNESS_PACKAGES:
        raise ValueError(
            f"Harness {path!r} is not trusted: it must be 'module:function' in one of "
            f"{', '.join(TRUSTED_HARNESS_PACKAGES)}."
        )
    harness = getattr(importlib.import_module(module_name), attr, None)
    if not callable(harness):
        raise ValueError(f"Harness {path!r} does not name a function.")
    return harness


def load_table(source: str | IO[bytes], kind: RequestKind) -> Any:
    """Read one Parquet input the way functions of ``kind`` receive it."""
    if kind is RequestKind.CONTEXT:
        import polars as pl

        return pl.read_parquet(source)
    import pandas as pd

    return pd.read_parquet(source)


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


def call_once(fn: Callable[..., Any], inputs: dict[str, Any], spec: JobSpec) -> Any:
    """The default harness: call the function once with its inputs, return its output."""
    return fn(**function_arguments(inputs, spec))


def call_repeatedly(fn: Callable[..., Any], inputs: dict[str, Any], spec: JobSpec) -> Any:
    """Call the function ``harness_options["repeat"]`` times (default 2) on fresh
    arguments; returns the list of outputs. Each call's duration is reported in
    ``details["calls"]`` as it completes, so a failing call still leaves the earlier
    ones in the report. Useful to see the spread of a noisy output on mock data.
    """
    import time

    report = current_report()
    calls = report.details.setdefault("calls", [])
    outputs = []
    for index in range(int(spec.harness_options.get("repeat", 2))):
        started = time.perf_counter()
        outputs.append(fn(**function_arguments(inputs, spec)))
        calls.append({"call": index, "seconds": round(time.perf_counter() - started, 6)})
    return outputs
