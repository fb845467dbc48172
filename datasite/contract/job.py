"""The contract between whoever asks for a run and the sandbox that performs it.

A job is plain data (JSON-serializable pydantic models), so the same spec can travel to
the local warm worker over a pipe or to a Dask worker on another machine. Nothing in a
job or its result is ever pickled: the function travels as source text, tables as
Parquet files, results as JSON plus Parquet/skops blobs (see ``results.py``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class RequestKind(StrEnum):
    """How the submitted function receives its data (see DESIGN.md).

    ``BLIND`` and ``CONTEXT`` are *data-blind*: the function runs where no private data
    is, with proxies that ask the trusted releaser for each DP release. ``MECHANISM``
    functions receive the raw tables; nothing automatic can prove them DP.
    """

    MECHANISM = "mechanism"  # receives pandas DataFrames, calls DP mechanisms itself
    BLIND = "blind"  # receives blind frames; the kit's helpers ask the releaser
    CONTEXT = "context"  # receives a blind OpenDP Context; its queries are released for it

    @property
    def data_blind(self) -> bool:
        """True when the function never shares an address space with the data."""
        return self is not RequestKind.MECHANISM


class Limits(BaseModel):
    """Resource limits the sandboxed child runs under."""

    cpu_seconds: int = 60
    memory_bytes: int = 2 * 1024**3
    wall_seconds: float = 120.0
    max_open_files: int = 256
    max_processes: int = 64
    max_output_bytes: int = 64 * 1024**2
    scratch_bytes: int = 256 * 1024**2  # the writable tmpfs /scratch, and the largest file
    #: Each release's answer waits until the next multiple of this many seconds, so how
    #: long the releaser took (which grows with the private table) is not a clock signal.
    release_quantum_seconds: float = 0.05


class ContextOptions(BaseModel):
    """How the site binds the releases of a data-blind request.

    A Context request may release ``queries`` results; the declared budget is split
    evenly over them. ``max_contributions`` is the privacy unit, rows one person may
    add: on the site it always comes from the dataset's policy, never from the request.
    """

    queries: int = 1
    max_contributions: int = 1


class JobSpec(BaseModel):
    """One run of submitted code, on private data or on mock data.

    ``inputs`` maps the function's keyword argument to an absolute Parquet path the
    sandbox may read. ``harness`` is the import path ("module:function") of *trusted*
    code that calls the submitted function inside the sandboxed child; the default one
    calls it once. The policy checker uses its own harnesses for the instrumented
    dry-run and the empirical audit, passing their settings in ``harness_options``.
    """

    job_id: str
    source: str
    entry: str
    kind: RequestKind = RequestKind.MECHANISM
    inputs: dict[str, str]
    #: The public columns of each input (name -> Arrow type): the mock's, which the
    #: upload checked equal to the real table's. A data-blind job's releaser answers the
    #: schema from them, so its start reads no private file and is not held to the
    #: release quantum; an input missing here has its schema read during the start,
    #: which is then held (see ``datasite.execution.releasing``).
    schemas: dict[str, dict[str, str]] = Field(default_factory=dict)
    epsilon: float = Field(ge=0)
    delta: float = Field(default=0.0, ge=0, le=1)
    context: ContextOptions = Field(default_factory=ContextOptions)
    harness: str = "datasite.execution.harness:call_once"
    harness_options: dict[str, Any] = Field(default_factory=dict)
    limits: Limits = Field(default_factory=Limits)
    #: This run's public inputs (``datasite.contract.run_args``), checked at the route;
    #: the function receives them as its ``run_args`` keyword. None: none were given.
    run_args: dict[str, Any] | None = None
    #: The Dask scheduler a data-blind job's releaser scans partitioned inputs on, one
    #: task per partition (set by the Dask executor). None: the worker's own cores.
    scan_cluster: str | None = None


class OutputFile(BaseModel):
    """A blob a run produced, by name inside the job's output directory."""

    name: str
    size: int


class JobResult(BaseModel):
    """What came back from the sandbox.

    ``manifest`` describes the returned value (see ``results.py``) and refers to blobs
    by name; ``blobs`` holds their bytes, base64-free because this model never goes on
    the wire as JSON with blobs inside: executors return blobs alongside.

    ``stdout``, ``stderr`` and ``error_detail`` can carry private values when the run
    touched private data. The server shows them to the owner only.
    """

    job_id: str
    ok: bool
    manifest: dict[str, Any] | None = None
    blobs: dict[str, bytes] = Field(default_factory=dict)
    error_type: str | None = None
    error_message: str | None = None  # safe to show the researcher
    error_detail: str | None = None  # traceback text: owner only
    stdout: str = ""
    stderr: str = ""
    touched_data: bool = False  # the child got as far as loading the inputs
    spend: list[dict[str, Any]] = Field(default_factory=list)  # from instrumented harnesses
    harness_report: dict[str, Any] = Field(default_factory=dict)
    duration_seconds: float = 0.0
    # the isolation the run actually had, e.g. ["netns", "mountns", "pidns", "chroot",
    # "uid:2000123456" (each run its own), "rlimits"]; missing entries mean a
    # loudly-logged opt-out was in force
    isolation: list[str] = Field(default_factory=list)
