"""Harnesses: the trusted code that calls the submitted function inside the sandbox.

A harness is named in ``JobSpec.harness`` as ``"module:function"`` and must live under
``datasite.``, ``policies.`` or ``researcher_kit.`` (``resolve_harness`` refuses the
rest). It runs in the sandboxed child, after the jail is entered, with this signature::

    def harness(fn: Callable, inputs: dict[str, Any], spec: JobSpec) -> Any

- ``fn`` is the submitted entry function; ``inputs`` maps each argument name of
  ``spec.inputs`` to its table (``load_table``): a pandas DataFrame, or a Polars
  ``LazyFrame`` over the input's Parquet files when the function annotates that argument
  as one (``def f(df: pl.LazyFrame)``), so a large table is scanned, not loaded.
  (Data-blind requests get blind proxies instead; they never reach this.)
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
from datasite.contract.job import JobSpec

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


def load_table(source: str | list[IO[bytes]], lazy: bool = False) -> Any:
    """One input from its Parquet files (open ones, or a path: a file or partition folder)."""
    import os

    from datasite.contract.tables import partition_files

    if isinstance(source, str):
        sources: list[Any] = partition_files(source) if os.path.isdir(source) else [source]
    else:
        sources = list(source)
    if lazy:  # open files are scanned by their /proc path, so Polars reads only what it needs
        import polars as pl

        return pl.scan_parquet([_scannable(s) for s in sources])
    import pandas as pd

    if len(sources) == 1:
        return pd.read_parquet(sources[0])
    return pd.concat([pd.read_parquet(s) for s in sources], ignore_index=True)


def _scannable(source: Any) -> Any:
    """A path Polars can scan lazily for an open file (it would copy a file object whole)."""
    import os

    if hasattr(source, "fileno"):
        path = f"/proc/self/fd/{source.fileno()}"
        if os.path.exists(path):
            return path
    return source


def wants_lazy(fn: Callable[..., Any], argument: str) -> bool:
    """Whether ``fn`` annotates ``argument`` as a Polars ``LazyFrame``.

    >>> import polars as pl
    >>> def f(df: pl.LazyFrame, other): ...
    >>> wants_lazy(f, "df"), wants_lazy(f, "other")
    (True, False)
    """
    import inspect

    try:
        parameter = inspect.signature(fn).parameters.get(argument)
    except (TypeError, ValueError):
        return False
    if parameter is None or parameter.annotation is inspect.Parameter.empty:
        return False
    annotation = parameter.annotation
    name = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    return name.rsplit(".", 1)[-1] == "LazyFrame"


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
