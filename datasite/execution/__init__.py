"""The sandboxed execution engine: submitted code runs here, never in the server.

- ``job``: the contract (JobSpec in, JobResult out), plain JSON-able data.
- ``executor``: ``LocalExecutor`` (warm worker processes on this machine),
  ``DaskExecutor`` (the same jobs on a Dask cluster), ``make_executor``.
- ``worker``: the warm worker with pandas/NumPy/Polars/OpenDP/scikit-learn/diffprivlib/
  skops imported, forking one sandboxed process tree per job (``supervise``).
- ``sandbox``: network/mount/PID namespaces, a read-only chroot jail, rlimits, uid 65534.
- ``runner``: what happens inside the jail (exec the code, call the harness).
- ``harness``: trusted callers of the submitted function (``call_once``; the policy
  checker adds its own) and ``HarnessReport`` for their extra findings.
- ``results``: the returned value as a JSON manifest + Parquet/skops blobs, and
  ``load_model`` (skops with an allowlist of trusted types).
- ``wire``: length-prefixed JSON + bytes messages between all these processes.

>>> from datasite.execution import encode_result, decode_result
>>> decode_result(*encode_result({"noisy_mean": 41.2}))
{'noisy_mean': 41.2}

The executors and harnesses load on first use: a researcher's laptop (any OS) imports
only the codec; the Linux-only sandbox stays out of the way.
"""

from typing import Any

from datasite.execution.job import ContextOptions, JobResult, JobSpec, Limits, RequestKind
from datasite.execution.results import (
    OutputTooLarge,
    ResultError,
    UnsupportedResult,
    UntrustedModelError,
    blob_names,
    decode_result,
    encode_result,
    load_model,
)

__all__ = [
    "ContextOptions",
    "DaskExecutor",
    "Executor",
    "HarnessReport",
    "JobResult",
    "JobSpec",
    "Limits",
    "LocalExecutor",
    "OutputTooLarge",
    "RequestKind",
    "ResultError",
    "UnsupportedResult",
    "UntrustedModelError",
    "blob_names",
    "call_once",
    "current_report",
    "decode_result",
    "encode_result",
    "load_model",
    "make_executor",
]

_LAZY = {
    "DaskExecutor": "executor",
    "Executor": "executor",
    "LocalExecutor": "executor",
    "make_executor": "executor",
    "HarnessReport": "harness",
    "call_once": "harness",
    "current_report": "harness",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"datasite.execution.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'datasite.execution' has no attribute {name!r}")
