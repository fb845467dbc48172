"""The site's own channels: error names a researcher sees, and who keeps the charge.

Issue 12, item 4: a researcher-defined exception class can spell a private value in its
name (``Err_987-65-4321``); researchers only ever see a name from a fixed list. And a
module that reads the data at import time and then fails is not refunded.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from datasite.contract.framing import pack
from datasite.contract.job import JobSpec, Limits
from datasite.execution.outcome import GENERIC_ERROR, Outcome, job_result, shown_error_type

MARKER = "987-65-4321"  # a private value: not in any mock, not in any fixed name
SPEC = JobSpec(job_id="t", source="", entry="f", inputs={}, epsilon=1.0)
CLEAN = Outcome(timed_out=False, oversize=False, exit_code=0)


def _messages(*headers: dict) -> bytes:
    return b"".join(pack(h) for h in headers)


def _failed(error_type: str, phase: str = "function", jailed: bool = True) -> bytes:
    final = {
        "event": "result",
        "ok": False,
        "phase": phase,
        "error_type": error_type,
        "error_message": f"{error_type} raised in your function; the owner can release it.",
        "error_detail": f"Traceback ...\n{error_type}: salary {MARKER}",
    }
    jail = [{"event": "jailed", "isolation": ["netns"]}] if jailed else []
    return _messages(*jail, final)


def test_a_researcher_defined_exception_name_is_never_shown() -> None:
    result = job_result(SPEC, {}, _failed(f"Err_{MARKER}"), CLEAN)
    assert result.error_type == GENERIC_ERROR
    assert MARKER not in (result.error_type + result.error_message)
    assert f"Err_{MARKER}" in result.error_detail  # the owner still sees the real one


@pytest.mark.parametrize(
    "name", ["ValueError", "KeyError", "ZeroDivisionError", "MemoryError", "RecursionError"]
)
def test_built_in_exception_names_are_shown(name: str) -> None:
    result = job_result(SPEC, {}, _failed(name), CLEAN)
    assert result.error_type == name and name in result.error_message


def test_site_names_are_on_the_list_and_a_lookalike_is_not() -> None:
    for name in ("TimeoutError", "CpuTimeExceeded", "OutputTooLarge", "UnsupportedResult"):
        assert shown_error_type(name) == name
    for name in ("ValueError_1", "valueerror", "Value Error", "", "x" * 500):
        assert shown_error_type(name) == GENERIC_ERROR


def test_the_sites_own_failures_keep_their_names() -> None:
    killed = Outcome(timed_out=False, oversize=False, exit_code=128 + signal.SIGXCPU)
    assert job_result(SPEC, {}, b"", killed).error_type == "CpuTimeExceeded"
    timed_out = Outcome(timed_out=True, oversize=False, exit_code=0)
    assert job_result(SPEC, {}, b"", timed_out).error_type == "TimeoutError"


def test_a_failure_after_researcher_code_ran_counts_as_touched() -> None:
    """Module-level code runs with the inputs open, before ``loaded``: no refund."""
    in_module = job_result(SPEC, {}, _failed("ValueError", phase="module"), CLEAN)
    assert in_module.touched_data
    killed = Outcome(timed_out=False, oversize=False, exit_code=128 + signal.SIGKILL)
    jailed_only = _messages({"event": "jailed", "isolation": []})
    assert job_result(SPEC, {}, jailed_only, killed).touched_data  # died in its module
    timed_out = Outcome(timed_out=True, oversize=False, exit_code=0)
    assert job_result(SPEC, {}, jailed_only, timed_out).touched_data


def test_a_failure_before_any_researcher_code_ran_is_untouched() -> None:
    compile_error = job_result(SPEC, {}, _failed("SyntaxError", "compile", jailed=False), CLEAN)
    assert not compile_error.touched_data
    refused = job_result(SPEC, {"event": "refused", "reason": "no userns"}, b"", CLEAN)
    assert not refused.touched_data


@pytest.mark.slow
def test_real_sandbox_module_code_that_reads_and_fails(tmp_path: Path) -> None:
    """Through the real sandbox: module code reads the data and raises a class whose
    name carries a private value. The researcher sees ``Error``; the charge stays."""
    from datasite.execution.executor import LocalExecutor

    pd.DataFrame({"ssn": np.array([MARKER] * 3)}).to_parquet(tmp_path / "real.parquet")
    source = (
        "import os, pyarrow.parquet as pq\n"
        "ssn = None\n"
        "for fd in range(3, 64):\n"
        "    try:\n"
        "        ssn = pq.read_table(os.fdopen(fd, 'rb', closefd=False))['ssn'][0].as_py()\n"
        "        break\n"
        "    except Exception:\n"
        "        pass\n"
        "raise type('Err_' + str(ssn), (Exception,), {})('boom')\n"
        "def f(df):\n"
        "    return 1\n"
    )
    spec = JobSpec(
        job_id=f"sound-{time.monotonic_ns()}",
        source=source,
        entry="f",
        inputs={"df": str(tmp_path / "real.parquet")},
        epsilon=1.0,
        limits=Limits(wall_seconds=120, cpu_seconds=60, max_output_bytes=1024**2),
    )
    with LocalExecutor(concurrency=1) as executor:
        result = executor.submit(spec).result(timeout=180)
        broken = executor.submit(spec.model_copy(update={"source": "def f(df) 1\n"}))
        syntax = broken.result(timeout=120)
    assert not result.ok and result.touched_data
    assert result.error_type == GENERIC_ERROR
    assert MARKER not in f"{result.error_type} {result.error_message}"
    assert MARKER in (result.error_detail or "")  # it did read the data; the owner sees it
    assert syntax.error_type == "SyntaxError" and not syntax.touched_data


@pytest.mark.parametrize("code", [3, 77, 128 + signal.SIGSEGV, 128 + signal.SIGUSR1])
def test_an_exit_status_or_signal_the_code_chose_is_not_shown(code: int) -> None:
    ended = job_result(SPEC, {}, _messages({"event": "jailed"}), Outcome(False, False, code))
    assert ended.error_type == "Crashed" and str(code % 128) not in ended.error_message
    assert str(code) in ended.error_detail or "SIG" in ended.error_detail  # the owner's
