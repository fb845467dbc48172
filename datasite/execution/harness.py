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
from typing import IO, Any, Literal

from datasite.contract.harness import current_report, function_arguments
from datasite.contract.job import JobSpec

TRUSTED_HARNESS_PACKAGES = ("datasite", "policies", "researcher_kit")
Harness = Callable[[Callable[..., Any], dict[str, Any], JobSpec], Any]
#: A lazy frame a raw-data function may ask for by annotating its argument.
Lazy = Literal["polars", "dask"] | None


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


def load_table(source: str | list[IO[bytes]], lazy: Lazy = None) -> Any:
    """One input from its Parquet files (open ones, or a path: a file or partition folder):
    a pandas DataFrame, or with ``lazy`` a Polars ``LazyFrame`` or a Dask DataFrame over
    the partitions (one Dask partition per file), which read only what they need."""
    import os

    from datasite.contract.tables import partition_files

    if isinstance(source, str):
        sources: list[Any] = partition_files(source) if os.path.isdir(source) else [source]
    else:
        sources = list(source)
    if lazy == "polars":  # open files are scanned by their /proc path
        import polars as pl

        return pl.scan_parquet([_scannable(s) for s in sources])
    if lazy == "dask":
        import dask.dataframe as dd

        return dd.read_parquet([_scannable(s) for s in sources])
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


def wants_lazy(fn: Callable[..., Any], argument: str) -> Lazy:
    """Which lazy frame ``fn``'s annotation of ``argument`` asks for: ``"polars"`` for a
    Polars ``LazyFrame``, ``"dask"`` for a Dask ``DataFrame``, None for pandas.

    >>> import dask.dataframe as dd
    >>> import polars as pl
    >>> def f(df: pl.LazyFrame, big: dd.DataFrame, other): ...
    >>> wants_lazy(f, "df"), wants_lazy(f, "big"), wants_lazy(f, "other")
    ('polars', 'dask', None)
    >>> def g(df: "dd.DataFrame"): ...
    >>> wants_lazy(g, "df")
    'dask'
    """
    import inspect

    try:
        parameter = inspect.signature(fn).parameters.get(argument)
    except (TypeError, ValueError):
        return None
    if parameter is None or parameter.annotation is inspect.Parameter.empty:
        return None
    annotation = parameter.annotation
    if isinstance(annotation, str):
        text = annotation.strip("'\"")  # a quoted name, under postponed annotations too
    else:
        module = getattr(annotation, "__module__", "") or ""
        text = f"{module}.{getattr(annotation, '__name__', '')}"
    name = text.rsplit(".", 1)[-1]
    if name == "LazyFrame":
        return "polars"
    if name == "DataFrame" and (text.startswith(("dd.", "dask.")) or ".dask" in text):
        return "dask"
    return None


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
