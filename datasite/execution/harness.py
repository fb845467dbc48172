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
from collections.abc import Callable
from typing import IO, Any

from datasite.contract.harness import current_report, function_arguments
from datasite.contract.job import JobSpec, RequestKind

TRUSTED_HARNESS_PACKAGES = ("datasite", "policies", "researcher_kit")
Harness = Callable[[Callable[..., Any], dict[str, Any], JobSpec], Any]


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
