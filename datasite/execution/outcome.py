"""Turning what a sandboxed run left behind into a ``JobResult``.

The job process is untrusted: its messages are parsed defensively (size caps, blob
names, manifest references), and when it never sent a result the worker's own
observations (timeout, oversized output, exit status) decide the error. Messages for
the researcher are generic and error names come from a fixed list
(``SHOWN_ERROR_TYPES``); details for the owner, the real error name included, go to
``error_detail``. ``touched_data`` is set once the researcher's code may have run with
the inputs open (the ``jailed`` event: the module runs next), so only a run that failed
before any researcher code ran is refunded.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Any

from datasite.contract.framing import WireError, unpack_all
from datasite.contract.job import JobResult, JobSpec
from datasite.contract.results import blob_names

MAX_TYPE_NAME = 100
#: The error names a researcher may see: built-in exceptions (whose names are fixed by
#: Python, so they carry nothing the code chose) and the site's own names. Any other name
#: (a class the researcher defined, whose name can spell a private value) is shown as
#: ``GENERIC_ERROR``; the owner still finds the real one in ``error_detail``.
SHOWN_ERROR_TYPES = frozenset(
    {
        # built-in exceptions
        "ArithmeticError",
        "AssertionError",
        "AttributeError",
        "BufferError",
        "EOFError",
        "Exception",
        "FileExistsError",
        "FileNotFoundError",
        "FloatingPointError",
        "ImportError",
        "IndentationError",
        "IndexError",
        "IsADirectoryError",
        "KeyError",
        "KeyboardInterrupt",
        "LookupError",
        "MemoryError",
        "ModuleNotFoundError",
        "NameError",
        "NotADirectoryError",
        "NotImplementedError",
        "OSError",
        "OverflowError",
        "PermissionError",
        "RecursionError",
        "ReferenceError",
        "RuntimeError",
        "StopIteration",
        "SyntaxError",
        "SystemExit",
        "TabError",
        "TimeoutError",
        "TypeError",
        "UnboundLocalError",
        "UnicodeDecodeError",
        "UnicodeEncodeError",
        "UnicodeError",
        "ValueError",
        "ZeroDivisionError",
        "BaseException",
        "BlockingIOError",
        "BrokenPipeError",
        "ChildProcessError",
        "ConnectionError",
        "ExceptionGroup",
        "BaseExceptionGroup",
        "GeneratorExit",
        "InterruptedError",
        "ProcessLookupError",
        "StopAsyncIteration",
        "SystemError",
        "UnicodeTranslateError",
        # fixed names from the libraries the site provides (not chosen by the code)
        "BudgetError",  # diffprivlib's accountant
        "LinAlgError",  # numpy
        "NotFittedError",  # scikit-learn
        "OpenDPException",
        # the site's own
        "BudgetExceeded",
        "Cancelled",
        "CpuTimeExceeded",
        "Crashed",
        "Interrupted",
        "Killed",
        "OutputTooLarge",
        "ProtocolError",
        "ReleaseError",  # researcher_kit.blind: the releaser refused or failed a release
        "ReleaseRefused",
        "ResultWithheld",
        "SandboxError",
        "SandboxUnavailable",
        "ScratchFileTooLarge",
        "UnsupportedResult",
        "UntrustedModelError",
        "WorkerCrashed",
    }
)
GENERIC_ERROR = "Error"
CRASHED = "The run ended before returning a result; the owner can release the details."


def shown_error_type(name: str | None) -> str | None:
    """The error name a researcher may see for ``name``: itself if on the fixed list,
    else ``GENERIC_ERROR``.

    >>> shown_error_type("ZeroDivisionError"), shown_error_type("Err_987-65-4321")
    ('ZeroDivisionError', 'Error')
    """
    if name is None:
        return None
    return name if name in SHOWN_ERROR_TYPES else GENERIC_ERROR


@dataclass(frozen=True)
class Outcome:
    """The worker's observations of one run."""

    timed_out: bool
    oversize: bool
    exit_code: int  # the job process's: 128 + signal number when killed


def _failure(spec: JobSpec, error_type: str, message: str, detail: str = "") -> dict[str, Any]:
    shown = shown_error_type(error_type)
    if shown != error_type:  # the owner keeps the real name
        detail = f"error type: {error_type}\n{detail}"
    return {
        "job_id": spec.job_id,
        "ok": False,
        "error_type": shown,
        "error_message": message,
        "error_detail": detail or None,
    }


def _from_exit(spec: JobSpec, code: int) -> dict[str, Any]:
    """Why the job process ended without sending a result."""
    limits = spec.limits
    if code == 128 + signal.SIGXCPU:
        return _failure(
            spec,
            "CpuTimeExceeded",
            f"The run used more than its {limits.cpu_seconds} CPU seconds and was stopped.",
        )
    if code == 128 + signal.SIGKILL:
        return _failure(
            spec,
            "Killed",
            "The run was killed (most likely it exhausted its memory or CPU time).",
        )
    if code == 128 + signal.SIGXFSZ:
        return _failure(
            spec, "ScratchFileTooLarge", f"The run wrote a file over {limits.scratch_bytes} bytes."
        )
    # The code chooses its own exit status or signal, so they could carry a private
    # value: the researcher sees one fixed message, the owner the number.
    if code > 128:
        name = signal.Signals(code - 128).name if code - 128 in signal.valid_signals() else "?"
        return _failure(spec, "Crashed", CRASHED, f"killed by signal {name}")
    return _failure(spec, "Crashed", CRASHED, f"exited with status {code}")


def _checked_blobs(
    spec: JobSpec, manifest: Any, blobs: dict[str, bytes]
) -> tuple[dict[str, Any] | None, str | None]:
    """The manifest if it and its blobs are acceptable, else the reason they are not."""
    if not isinstance(manifest, dict):
        return None, "the result manifest is missing"
    try:
        wanted = set(blob_names(manifest))
    except WireError as exc:
        return None, str(exc)
    if not wanted <= set(blobs):
        return None, "the result manifest refers to blobs that were not sent"
    if sum(len(b) for b in blobs.values()) > spec.limits.max_output_bytes:
        return None, "oversize"
    return manifest, None


def _from_messages(spec: JobSpec, data: bytes) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Fold the job's messages into JobResult fields (and its blobs)."""
    fields: dict[str, Any] = {"job_id": spec.job_id, "ok": False}
    blobs: dict[str, bytes] = {}
    try:
        for header, message_blobs in unpack_all(data):
            event = header.get("event")
            if event == "jailed":
                fields["isolation"] = [str(x) for x in header.get("isolation", [])]
                # The researcher's module runs next, with the input files already open:
                # from here on a failure may carry what it read, so the charge stays.
                fields["touched_data"] = True
            elif event == "loaded":
                fields["touched_data"] = True
            elif event == "result":
                fields["final"], blobs = header, message_blobs
    except WireError as exc:
        fields["protocol_error"] = str(exc)
    return fields, blobs


def delivered(spec: JobSpec, data: bytes) -> bool:
    """Whether the job's messages, all readable, include its result."""
    fields, _ = _from_messages(spec, data)
    return "final" in fields and "protocol_error" not in fields


def _oversize(spec: JobSpec) -> dict[str, Any]:
    return _failure(
        spec,
        "OutputTooLarge",
        f"The function's output is larger than the {spec.limits.max_output_bytes}-byte limit.",
    )


def job_result(
    spec: JobSpec,
    control: dict[str, Any],
    result_bytes: bytes,
    outcome: Outcome,
    stdout: str = "",
    stderr: str = "",
) -> JobResult:
    """The JobResult for a finished, timed-out or killed run."""
    if control.get("event") == "refused":
        return JobResult(
            **_failure(
                spec,
                "SandboxUnavailable",
                "The datasite could not isolate the run, so it did not start.",
                f"{control.get('reason')}; set DATASITE_ALLOW_UNSANDBOXED=1 to run "
                "without namespaces (unsafe).",
            )
        )
    fields, blobs = _from_messages(spec, result_bytes)
    final = fields.pop("final", None)
    protocol_error = fields.pop("protocol_error", None)
    base = {
        "stdout": stdout,
        "stderr": stderr,
        "touched_data": fields.get("touched_data", False),
        "isolation": fields.get("isolation", []),
    }
    if outcome.oversize:
        return JobResult(**_oversize(spec), **base)
    if outcome.timed_out:
        message = f"The run exceeded its wall-clock limit of {spec.limits.wall_seconds:g} s."
        return JobResult(**_failure(spec, "TimeoutError", message), **base)
    if final is None:
        failure = _from_exit(spec, outcome.exit_code)
        if protocol_error:
            failure["error_detail"] = f"unreadable result messages: {protocol_error}"
        return JobResult(**failure, **base)
    extras = {
        "spend": final.get("spend") if isinstance(final.get("spend"), list) else [],
        "harness_report": final.get("harness_report")
        if isinstance(final.get("harness_report"), dict)
        else {},
    }
    if final.get("ok") is True:
        manifest, problem = _checked_blobs(spec, final.get("manifest"), blobs)
        if problem == "oversize":
            return JobResult(**_oversize(spec), **base, **extras)
        if problem:
            message = "The run's output could not be read."
            failure = _failure(spec, "ProtocolError", message, problem)
            return JobResult(**failure, **base, **extras)
        return JobResult(
            job_id=spec.job_id, ok=True, manifest=manifest, blobs=blobs, **base, **extras
        )
    error_type = str(final.get("error_type") or GENERIC_ERROR)[:MAX_TYPE_NAME]
    message = str(final.get("error_message") or "The run failed.")[:1000]
    if shown_error_type(error_type) != error_type:  # the message names the type too
        where = "while loading your code" if final.get("phase") == "module" else "in your function"
        message = f"An exception raised {where}; the owner can release the details."
    failure = _failure(spec, error_type, message, str(final.get("error_detail") or ""))
    return JobResult(**failure, **base, **extras)
