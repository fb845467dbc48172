"""The job process: everything that happens between the jail and the result message.

``job_main`` runs in the sandboxed job process (forked from the warm worker, see
``supervise.py``). In order: compile the source (no code runs yet), resolve the
trusted harness, open the input files while still root, apply the rlimits, enter the
jail and drop to the sandbox user, clear the environment, execute the module, load
the inputs (``touched_data`` from here on), call the harness, encode the output.

Every step reports over the result pipe as ``wire`` messages: ``jailed`` (isolation
applied), ``loaded`` (inputs read), then one ``result``. Error messages meant for the
researcher are generic; tracebacks go to ``error_detail`` for the owner only.
"""

from __future__ import annotations

import io
import linecache
import os
import shutil
import sys
import tempfile
import traceback
import types
from typing import Any, NoReturn

from datasite.contract.framing import pack
from datasite.contract.harness import start_report
from datasite.contract.job import JobSpec
from datasite.contract.results import ResultError, encode_result
from datasite.contract.tables import partition_files
from datasite.execution import sandbox
from datasite.execution.harness import load_table, resolve_harness, wants_lazy

SOURCE_NAME = "<submitted>"
MODULE_NAME = "datasite_job"
MAX_DETAIL = 64 * 1024
MAX_SHOWN = 1000
OUTPUT_REFUSED = (
    "The function's output cannot be released: return numbers, strings, NumPy arrays, "
    "pandas DataFrames or Series, fitted scikit-learn/diffprivlib models or skops bytes, "
    "or tuples, lists and dicts of these, within the output size limit. The owner can "
    "release the details."
)


def display(*objects: Any) -> None:
    """The notebook's ``display()``: inside the sandbox it prints (stdout is owner-only)."""
    for obj in objects:
        print(obj)


class _Phase:
    """Which step failed decides the researcher-facing message."""

    SETUP, COMPILE, MODULE, ENTRY, INPUTS, FUNCTION, OUTPUT = (
        "setup",
        "compile",
        "module",
        "entry",
        "inputs",
        "function",
        "output",
    )


def safe_message(phase: str, exc: BaseException, spec: JobSpec) -> str:
    """A message that names what failed but carries no value from the data.

    A data-blind process holds nothing from the data but released values, so what its
    code raised is shown as it is. In a raw-data process any text may carry private
    values (code can raise the site's own exception classes with any message), so only
    fixed texts leave.
    """
    name = type(exc).__name__
    if phase == _Phase.COMPILE and isinstance(exc, SyntaxError):
        return f"Your code does not compile: {name} at line {exc.lineno}."
    if phase == _Phase.ENTRY:
        return f"Your code defines no function named {spec.entry!r}."
    if spec.kind.data_blind and phase in (_Phase.MODULE, _Phase.FUNCTION, _Phase.OUTPUT):
        return f"{name}: {str(exc)[:MAX_SHOWN]}"
    if phase == _Phase.OUTPUT and isinstance(exc, ResultError):
        return OUTPUT_REFUSED
    if phase == _Phase.SETUP:
        return f"The sandbox could not prepare the run ({name}); it did not start."
    if phase == _Phase.INPUTS:
        return f"The datasite could not load the input tables ({name})."
    if isinstance(exc, MemoryError):
        return (
            f"Your function ran out of memory (limit: {spec.limits.memory_bytes} bytes "
            "beyond the preloaded libraries)."
        )
    where = "while loading your code" if phase == _Phase.MODULE else "in your function"
    return f"{name} raised {where}; the owner can release the details."


class _Reporter:
    """Writes messages to the worker; silent in processes the user code forked."""

    def __init__(self, fd: int) -> None:
        self.fd, self.pid = fd, os.getpid()

    def send(self, header: dict[str, Any], blobs: dict[str, bytes] | None = None) -> None:
        if os.getpid() != self.pid:  # a fork of the user code came back through here
            os._exit(0)
        data = memoryview(pack(header, blobs))
        while data:
            data = data[os.write(self.fd, data) :]


def _compile(spec: JobSpec) -> types.CodeType:
    lines = spec.source.splitlines(keepends=True)
    linecache.cache[SOURCE_NAME] = (len(spec.source), None, lines, SOURCE_NAME)
    return compile(spec.source, SOURCE_NAME, "exec", dont_inherit=True)


def _execute_module(code: types.CodeType) -> types.ModuleType:
    module = types.ModuleType(MODULE_NAME)
    module.__dict__["display"] = display
    sys.modules[MODULE_NAME] = module
    exec(code, module.__dict__)
    return module


def _degraded_scratch(config: sandbox.SandboxConfig) -> list[str]:
    """The opt-out path: no jail, but still a private cwd, no root and the limits."""
    config = sandbox.for_this_run(config)
    scratch = tempfile.mkdtemp(prefix="datasite-scratch-")
    if os.getuid() == 0:
        os.chown(scratch, config.uid, config.gid)
    os.chdir(scratch)
    sandbox.drop_privileges(config)
    return [f"uid:{os.getuid()}"]


def _redirect_stdio(stdout_fd: int, stderr_fd: int) -> None:
    devnull = os.open("/dev/null", os.O_RDONLY)
    for source, target in ((devnull, 0), (stdout_fd, 1), (stderr_fd, 2)):
        os.dup2(source, target)
    for fd in {devnull, stdout_fd, stderr_fd}:
        os.close(fd)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115 - lives as long as the process
    for fd, attr in ((1, "stdout"), (2, "stderr")):
        stream = io.TextIOWrapper(
            open(fd, "wb", closefd=False), errors="backslashreplace", line_buffering=True
        )
        setattr(sys, attr, stream)
        setattr(sys, f"__{attr}__", stream)


def close_all_but(keep: set[int]) -> None:
    """Close every file descriptor of this process except ``keep``.

    Empty ranges are skipped: ``os.closerange(n, n)`` would reach ``close_range(n, n - 1)``,
    which Linux reads as "from n to the last descriptor".
    """
    low = 0
    for fd in sorted(keep):
        if low < fd:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 65536)


def _open_parts(path: str) -> list[Any]:
    """The open Parquet file(s) of an input: one file, or each part of a partition folder."""
    if os.path.isdir(path):
        return [open(part, "rb") for part in partition_files(path)]  # noqa: SIM115
    return [open(path, "rb")]  # noqa: SIM115 - closed once the table is loaded


def _blind_inputs(spec: JobSpec, fd: int) -> dict[str, Any]:
    """Blind proxies over the releaser's socket, one per input, with the public schema."""
    from datasite.contract.job import RequestKind
    from datasite.contract.release import ReleaseCall
    from researcher_kit.blind import SocketChannel, blind_arguments

    channel = SocketChannel(fd)
    schemas = {name: channel.call(ReleaseCall(op="schema", table=name)) for name in spec.inputs}
    return blind_arguments(channel, schemas, context=spec.kind is RequestKind.CONTEXT)


def job_main(
    spec: JobSpec,
    config: sandbox.SandboxConfig,
    fds: dict[str, int],
    namespaced: bool,
) -> NoReturn:
    """Run the job in this (forked) process and exit; never returns."""
    _redirect_stdio(fds["stdout"], fds["stderr"])
    reporter = _Reporter(fds["result"])
    close_all_but({0, 1, 2, fds["result"], fds.get("release", fds["result"])})
    phase, report, scratch = _Phase.SETUP, None, None
    try:
        phase = _Phase.COMPILE
        code = _compile(spec)
        phase = _Phase.SETUP
        harness = resolve_harness(spec.harness)
        blind = spec.kind.data_blind
        paths = {} if blind else spec.inputs
        files = {name: _open_parts(path) for name, path in paths.items()}
        sandbox.apply_limits(spec.limits, sandbox.address_space_in_use())
        os.umask(0o022)
        if namespaced:
            isolation = sandbox.enter_jail(config, spec.limits.scratch_bytes)
        else:
            isolation = _degraded_scratch(config)
            scratch = os.getcwd()
        os.umask(0o077)
        sandbox.clean_environment(home=scratch or "/scratch")
        reporter.send({"event": "jailed", "isolation": [*isolation, "rlimits", "empty-env"]})
        phase = _Phase.MODULE
        module = _execute_module(code)
        phase = _Phase.ENTRY
        fn = getattr(module, spec.entry)
        if not callable(fn):
            raise TypeError(f"{spec.entry} is not a function")
        phase = _Phase.INPUTS
        if blind:
            inputs = _blind_inputs(spec, fds["release"])
        else:
            lazy = {name: wants_lazy(fn, name) for name in files}
            inputs = {name: load_table(parts, lazy[name]) for name, parts in files.items()}
            for name, parts in files.items():
                if lazy[name] is None:  # a lazy frame reads its files when it is computed
                    for handle in parts:
                        handle.close()
        reporter.send({"event": "loaded"})
        phase, report = _Phase.FUNCTION, start_report()
        value = harness(fn, inputs, spec)
        phase = _Phase.OUTPUT
        manifest, blobs = encode_result(value, spec.limits.max_output_bytes)
        done = {"event": "result", "ok": True, "manifest": manifest, **_extras(report)}
        reporter.send(done, blobs)
    except BaseException as exc:  # noqa: BLE001 - every failure becomes a JobResult
        detail = "".join(traceback.format_exception(exc))[-MAX_DETAIL:]
        failure = {
            "event": "result",
            "ok": False,
            "phase": phase,
            "error_type": type(exc).__name__,
            "error_message": safe_message(phase, exc, spec),
            "error_detail": detail,
        }
        try:
            reporter.send({**failure, **_extras(report)})
        except BaseException:  # noqa: BLE001 - e.g. an unserializable report
            reporter.send(failure)
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:  # noqa: BLE001, S110 - the stream may be broken
                pass
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        # Closed before the exit, not by it: the kernel closes a dying process's files
        # only after it has torn down its address space (a copy of the warm worker's,
        # ~10 ms), and the worker's pipes and the releaser's socket wait for that close.
        close_all_but(set())
        os._exit(0)


def _extras(report: Any) -> dict[str, Any]:
    """The harness report as plain JSON (unknown objects become their ``str``)."""
    import json

    if report is None:
        return {}
    return json.loads(
        json.dumps({"harness_report": report.details, "spend": report.spend}, default=str)
    )
