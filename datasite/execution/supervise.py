"""One job, from the warm worker's side: fork, isolate, watch, collect, clean up.

The process tree of a run::

    warm worker (root, stack imported)                     run_job: watches pipes + clock
      +- supervisor (own session, pdeathsig)                unshare(net, mnt, pid, ipc, uts)
           +- init: PID 1 of the job's PID namespace        reaps; its death kills the rest
                +- job process (job_process.job_main)            jail, own uid, user code
                     +- anything the user code forks

The worker reads the job's stdout/stderr (first ``LOG_CAP`` bytes kept) and its result
messages (at most ``max_output_bytes`` plus a small allowance) while the wall clock
runs. On timeout or oversized output it SIGKILLs the namespace's init, which makes the
kernel kill every process in the namespace, even ones that called ``setsid()``; a
final ``killpg`` of the supervisor's session covers the unsandboxed opt-out.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import selectors
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from datasite.contract.framing import WireError, pack, unpack_all
from datasite.contract.job import JobResult, JobSpec
from datasite.execution import sandbox
from datasite.execution.outcome import Outcome, delivered, job_result
from datasite.execution.releasing import start_releaser

log = logging.getLogger("datasite.execution")
LOG_CAP = 1024**2
HEADER_ALLOWANCE = 4 * 1024**2  # result JSON (traceback, report) on top of the blobs
DRAIN_SECONDS = 5.0
LEDGER_GRACE = 0.2  # for the ledger of a job that sent its result (it comes at once)
STREAMS = ("stdout", "stderr", "result", "control")
HANGUP = "hangup"  # the worker's channel to its executor, watched during a run
CANCELLED = (
    "The datasite was stopped while this run was in flight; the run was cancelled "
    "before it finished."
)


def _exit_code(status: int) -> int:
    """Pass a child's fate up the tree as an exit code (128 + signal if killed)."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 70


def _init(spec: JobSpec, config: sandbox.SandboxConfig, fds: dict[str, int], ns: bool) -> NoReturn:
    """PID 1 of the job's namespace: fork the job, reap everything, exit with its code."""
    code = 70
    try:
        sandbox.set_parent_death_signal()
        job = os.fork()
        if job == 0:
            from datasite.execution.job_process import job_main

            job_main(spec, config, fds, ns)
        for fd in fds.values():
            os.close(fd)
        while True:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            if pid == job:
                code = _exit_code(status)
                break
    finally:
        os._exit(code)


def _supervisor(spec: JobSpec, config: sandbox.SandboxConfig, fds: dict[str, int]) -> NoReturn:
    """Own session, new namespaces, then the namespace's init; exits with its code."""
    code = 70
    try:
        os.setsid()
        sandbox.set_parent_death_signal()
        control = fds.pop("control")
        degraded = None
        try:
            sandbox.unshare_namespaces()
        except OSError as exc:
            if not config.allow_unsandboxed:
                os.write(control, pack({"event": "refused", "reason": str(exc)}))
                os._exit(0)
            degraded = str(exc)
        init = os.fork()
        if init == 0:
            os.close(control)
            _init(spec, config, fds, degraded is None)
        os.write(control, pack({"event": "started", "init": init, "degraded": degraded}))
        for fd in (*fds.values(), control):
            os.close(fd)
        code = _exit_code(os.waitpid(init, 0)[1])
    finally:
        os._exit(code)


@dataclass
class _Capture:
    cap: int
    data: bytearray = field(default_factory=bytearray)
    dropped: int = 0

    def add(self, chunk: bytes) -> None:
        room = max(0, self.cap - len(self.data))
        self.data += chunk[:room]
        self.dropped += max(0, len(chunk) - room)

    def text(self) -> str:
        text = self.data.decode("utf-8", errors="replace")
        return text + (f"\n[... {self.dropped} more bytes not kept]" if self.dropped else "")


@dataclass
class _Watch:
    """What the worker saw of one run."""

    supervisor: int
    captures: dict[str, _Capture]
    timed_out: bool = False
    oversize: bool = False
    status: int | None = None

    def control(self) -> dict[str, Any]:
        with contextlib.suppress(WireError):
            for header, _ in unpack_all(bytes(self.captures["control"].data)):
                return header
        return {}

    def delivered(self, spec: JobSpec) -> bool:
        """The job sent its result within its limits: then its exit code decides nothing."""
        result = bytes(self.captures["result"].data)
        return not (self.timed_out or self.oversize) and delivered(spec, result)

    def kill(self) -> None:
        init = self.control().get("init")
        if isinstance(init, int) and init > 1:
            with contextlib.suppress(ProcessLookupError):
                os.kill(init, signal.SIGKILL)  # namespace init: takes everything with it
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.supervisor, signal.SIGKILL)


#: The run this worker is watching, and whether it was asked to stop it
#: (:func:`cancel_current`, the worker's SIGUSR1 handler).
_current: _Watch | None = None
_cancel_requested = False


def cancel_current() -> None:
    """Stop the run in progress: its sandbox is killed, its releaser still reports its
    ledger (so a data-blind run's spend is known), and its result says ``Cancelled``.

    Called from the worker's signal handler, between two bytecodes of the main thread;
    a request that arrives before the run's sandbox exists stops it as soon as it does.
    The request holds until :func:`clear_cancel` (the worker calls it after answering).
    """
    global _cancel_requested
    _cancel_requested = True
    if _current is not None:
        _current.kill()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(_current.supervisor, signal.SIGKILL)  # before its setsid, too


def clear_cancel() -> None:
    global _cancel_requested
    _cancel_requested = False


def _hung_up(fd: int) -> bool:
    """Whether every writer of pipe ``fd`` has closed it (read nothing from it)."""
    poller = select.poll()
    poller.register(fd, select.POLLHUP)
    return any(events & (select.POLLHUP | select.POLLERR) for _, events in poller.poll(0))


def _watch(
    watch: _Watch, readers: dict[str, int], wall_seconds: float, hangup: int | None = None
) -> None:
    deadline = time.monotonic() + wall_seconds
    killed = False
    with selectors.DefaultSelector() as selector:
        for name, fd in readers.items():
            selector.register(fd, selectors.EVENT_READ, name)
        if hangup is not None:
            selector.register(hangup, selectors.EVENT_READ, HANGUP)
        while len(selector.get_map()) > (hangup is not None):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if killed:
                    break  # something still holds a pipe after the kill: stop waiting
                watch.timed_out, killed = True, True
                watch.kill()
                deadline = time.monotonic() + DRAIN_SECONDS
                continue
            for key, _ in selector.select(remaining):
                if key.data == HANGUP:  # the executor is gone, or spoke out of turn
                    selector.unregister(key.fd)
                    if _hung_up(key.fd):
                        cancel_current()
                    continue
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    selector.unregister(key.fd)
                    continue
                capture = watch.captures[key.data]
                capture.add(chunk)
                if key.data == "result" and capture.dropped and not killed:
                    watch.oversize, killed = True, True
                    watch.kill()
                    deadline = time.monotonic() + DRAIN_SECONDS
    for fd in readers.values():
        os.close(fd)


def _reap(watch: _Watch) -> None:
    """Collect the supervisor's status, kill its session's stragglers, then reap it."""
    pid = watch.supervisor
    deadline = time.monotonic() + DRAIN_SECONDS
    while time.monotonic() < deadline:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if info is not None:
            break
        time.sleep(0.005)
    else:
        watch.kill()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)  # still a zombie, so its pid cannot be reused yet
    watch.status = os.waitpid(pid, 0)[1]


#: What the last run left to reap after its result was handed over (see run_job).
_leftovers: list[Callable[[], None]] = []


def clean_up() -> None:
    """Reap what the last run left: its sandbox tree and its releaser. The worker calls
    this once it has sent the result; every run calls it before it starts."""
    while _leftovers:
        _leftovers.pop(0)()


def run_job(spec: JobSpec, config: sandbox.SandboxConfig, hangup: int | None = None) -> JobResult:
    """Run ``spec`` in a fresh sandboxed process tree and return what came back.

    A data-blind job gets a releaser process first (``releasing``): the job process
    receives one end of its socket and no input at all, and the run's spend is the
    releaser's ledger, not anything the job says.

    ``hangup`` is the read end of the pipe the worker's orders arrive on. When its
    writer closes it during the run (the site was killed: ``kill -9`` sends no SIGUSR1),
    the run is cancelled at once: no one is left to take its result, and it must not
    go on working on the private data until its wall clock runs out.
    """
    clean_up()
    started = time.monotonic()
    releaser = start_releaser(spec) if spec.kind.data_blind else None
    pipes = {name: os.pipe() for name in STREAMS}
    pid = os.fork()
    if pid == 0:
        try:
            for read_end, _ in pipes.values():
                os.close(read_end)
            fds = {name: w for name, (_, w) in pipes.items()}
            job = spec
            if releaser is not None:
                os.close(releaser.ledger)
                fds["release"] = releaser.job_end
                job = spec.model_copy(update={"inputs": dict.fromkeys(spec.inputs, "")})
            _supervisor(job, config, fds)
        finally:
            os._exit(70)
    for _, write_end in pipes.values():
        os.close(write_end)
    if releaser is not None:
        os.close(releaser.job_end)
    caps = {"stdout": LOG_CAP, "stderr": LOG_CAP, "control": 64 * 1024}
    caps["result"] = spec.limits.max_output_bytes + HEADER_ALLOWANCE
    watch = _Watch(pid, {name: _Capture(cap) for name, cap in caps.items()})
    global _current
    _current = watch
    try:
        if _cancel_requested:
            cancel_current()
        readers = {name: r for name, (r, _) in pipes.items()}
        _watch(watch, readers, spec.limits.wall_seconds, hangup)
    finally:
        _current = None
        # A job that sent its result and closed its files, with the releaser's ledger in,
        # is answered before its process tree is reaped (three exits of copies of this
        # process, one after the other: ~15 ms): nothing left in the tree can change the
        # result or the spend, and the worker reaps it (clean_up) before the next job.
        # Otherwise the tree is reaped first: its exit code may be the error, and what
        # still holds the releaser's socket may still be spending.
        early = watch.delivered(spec) and (releaser is None or releaser.ledger_sent(LEDGER_GRACE))
        if not early:
            _reap(watch)
        ledger = releaser.entries() if releaser is not None else None
        if early:
            _leftovers.append(lambda: _reap(watch))
            if releaser is not None:
                _leftovers.append(releaser.reap)
        elif releaser is not None:
            releaser.reap()
    result = job_result(
        spec,
        watch.control(),
        bytes(watch.captures["result"].data),
        Outcome(watch.timed_out, watch.oversize, _exit_code(watch.status or 0)),
        stdout=watch.captures["stdout"].text(),
        stderr=watch.captures["stderr"].text(),
    )
    if _cancel_requested and not result.ok:
        result.error_type, result.error_message = "Cancelled", CANCELLED
    if ledger is not None:
        result.spend = ledger  # the releaser's word, never the job's
        result.touched_data = bool(ledger)  # only a release reads the data
    result.duration_seconds = time.monotonic() - started
    if watch.control().get("degraded"):
        log.warning(
            "RUN %s WAS NOT SANDBOXED (%s=1): %s",
            spec.job_id,
            sandbox.OPT_OUT_ENV,
            watch.control()["degraded"],
        )
    return result
