"""Executors: where jobs go to run. Local warm workers by default, Dask to scale out.

Both hand back a ``concurrent.futures.Future[JobResult]`` and never raise for a failed
run: every failure (exception, timeout, memory, crash, a dead worker) is a
``JobResult(ok=False)``.

>>> from datasite.contract.job import JobSpec
>>> from datasite.execution.executor import LocalExecutor
>>> with LocalExecutor(concurrency=1) as executor:  # doctest: +SKIP
...     spec = JobSpec(job_id="1", source="def f(df): return len(df)", entry="f",
...                    inputs={"df": "/data/pings.parquet"}, epsilon=0.0)
...     executor.submit(spec).result().manifest["root"]
{'type': 'int', 'value': 2000}
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from typing import Any, Protocol

from datasite.contract.framing import (
    pack,
    read_message,
    result_from_message,
    result_message,
    unpack_all,
    write_message,
)
from datasite.contract.job import JobResult, JobSpec
from datasite.execution.sandbox import OPT_OUT_ENV

log = logging.getLogger("datasite.execution")
WORKER_MODULE = "datasite.execution.worker"
STARTUP_SECONDS = 180.0
GRACE_SECONDS = 60.0  # beyond the job's own wall clock before the worker is presumed hung


class Executor(Protocol):
    """Runs JobSpecs in the sandbox.

    An executor may also have ``cancel(future, force=False) -> bool`` (both here do): stop
    a job that has not finished, so that its future resolves soon (a queued job is
    dropped, a running one answers ``Cancelled``); ``force`` kills whatever runs it.
    """

    def submit(self, spec: JobSpec) -> Future[JobResult]: ...

    def close(self) -> None: ...


def _failed(spec: JobSpec, error_type: str, message: str, detail: str) -> JobResult:
    """A run the executor lost; it may have read the data, so it counts as touched."""
    return JobResult(
        job_id=spec.job_id,
        ok=False,
        error_type=error_type,
        error_message=message,
        error_detail=detail,
        touched_data=True,
    )


class WorkerProcess:
    """One warm worker subprocess (``python -m datasite.execution.worker``)."""

    def __init__(
        self,
        allow_unsandboxed: bool = False,
        launcher: Sequence[str] = (),
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        env = {
            **(extra_env or {}),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        if allow_unsandboxed:
            env[OPT_OUT_ENV] = "1"
        self.process = subprocess.Popen(
            [*launcher, sys.executable, "-m", WORKER_MODULE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        self.ready = self._call(None, STARTUP_SECONDS)[0]

    def _call(
        self, request: dict[str, Any] | None, timeout: float
    ) -> tuple[dict[str, Any], dict[str, bytes]]:
        """Send ``request`` (if any) and read one reply; a watchdog kills a hung worker."""
        watchdog = threading.Timer(timeout, self.kill)
        watchdog.daemon = True
        watchdog.start()
        try:
            if request is not None:
                write_message(self.process.stdin, request)
            return read_message(self.process.stdout)
        finally:
            watchdog.cancel()

    def run(self, spec: JobSpec) -> JobResult:
        """Run one job; raises if the worker died or hung (the caller restarts it)."""
        timeout = spec.limits.wall_seconds + GRACE_SECONDS
        header, blobs = self._call({"spec": spec.model_dump(mode="json")}, timeout)
        return result_from_message(header, blobs)

    def alive(self) -> bool:
        return self.process.poll() is None

    def interrupt(self) -> None:
        """Ask the worker to cancel its job in progress (SIGUSR1); it still answers."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(self.process.pid, signal.SIGUSR1)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self, timeout: float = 10.0) -> None:
        """Close the channel (the worker exits on EOF); kill it if it lingers."""
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        with contextlib.suppress(OSError):
            self.process.stdout.close()


class LocalExecutor:
    """A pool of up to ``concurrency`` warm workers on this machine, each running one job
    at a time. A worker is started when a job finds none idle (so a second one only when
    two jobs run at once: each costs seconds of CPU to import the stack) and is kept warm
    for the next job. A crashed job is an ordinary failed JobResult; a worker that dies
    or hangs is killed, its job fails with ``WorkerCrashed``, and a fresh worker replaces
    it.

    ``allow_unsandboxed`` (default: the ``DATASITE_ALLOW_UNSANDBOXED`` variable) lets
    runs proceed without namespaces where the kernel refuses them; it is logged loudly.
    ``launcher`` prefixes the worker's command line (e.g. ``["nice", "-n", "5"]``);
    ``worker_env`` is added to the workers' otherwise minimal environment (the site's
    ``DATASITE_TEXT_CACHE``).
    """

    def __init__(
        self,
        concurrency: int = 2,
        allow_unsandboxed: bool | None = None,
        launcher: Sequence[str] = (),
        worker_env: Mapping[str, str] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if allow_unsandboxed is None:
            from datasite.execution.sandbox import opt_out_from_env

            allow_unsandboxed = opt_out_from_env()
        if allow_unsandboxed:
            log.warning("SANDBOX OPT-OUT: runs may execute without namespace isolation.")
        self._options = {
            "allow_unsandboxed": allow_unsandboxed,
            "launcher": tuple(launcher),
            "extra_env": dict(worker_env or {}),
        }
        self._queue: queue.Queue[tuple[JobSpec, Future[JobResult]] | None] = queue.Queue()
        self._closed = False
        self._running: dict[Future[JobResult], WorkerProcess] = {}
        self._running_lock = threading.Lock()
        self._idle: list[WorkerProcess] = []  # warm workers between jobs, newest last
        self._threads = [
            threading.Thread(target=self._serve, name=f"datasite-sandbox-{i}", daemon=True)
            for i in range(concurrency)
        ]
        for thread in self._threads:
            thread.start()

    def _start_worker(self) -> WorkerProcess | None:
        try:
            return WorkerProcess(**self._options)
        except Exception:
            log.exception("could not start a sandbox worker")
            return None

    def _warm_worker(self) -> WorkerProcess | None:
        """An idle worker that is still alive, else a new one (None if none starts)."""
        with self._running_lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.alive():
                    return worker
                worker.stop()  # died between jobs: reap it
        return self._start_worker()

    def _serve(self) -> None:
        while (item := self._queue.get()) is not None:
            spec, future = item
            if not future.set_running_or_notify_cancel():
                continue
            worker = self._warm_worker()
            try:
                if worker is None:
                    raise RuntimeError("no sandbox worker could be started")
                with self._running_lock:
                    self._running[future] = worker
                try:
                    result = worker.run(spec)
                finally:
                    with self._running_lock:
                        self._running.pop(future, None)
            except Exception as exc:
                log.exception("sandbox worker lost job %s", spec.job_id)
                result = _failed(
                    spec,
                    "WorkerCrashed",
                    "The sandbox worker failed during the run; the run did not finish.",
                    repr(exc),
                )
                if worker is not None:
                    worker.kill()
                worker = None
            if worker is not None:
                with self._running_lock:
                    self._idle.append(worker)  # before the result: the next job finds it
            future.set_result(result)

    def submit(self, spec: JobSpec) -> Future[JobResult]:
        """Queue a job; the future resolves to its JobResult."""
        if self._closed:
            raise RuntimeError("This executor is closed.")
        future: Future[JobResult] = Future()
        self._queue.put((spec, future))
        return future

    def cancel(self, future: Future[JobResult], force: bool = False) -> bool:
        """Drop a queued job, or ask the worker running it to cancel it (its future then
        resolves to a ``Cancelled`` result, with the releaser's ledger of a data-blind
        job); ``force`` kills that worker instead (``WorkerCrashed``). False when the job
        is neither queued nor running here."""
        if future.cancel():
            return True
        with self._running_lock:
            worker = self._running.get(future)
        if worker is None:
            return False
        if force:
            worker.kill()
        else:
            worker.interrupt()
        return True

    def close(self) -> None:
        """Finish queued jobs, then stop the workers."""
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()
        for worker in self._idle:
            worker.stop()
        self._idle.clear()

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_dask_local: LocalExecutor | None = None
_dask_lock = threading.Lock()


def run_packed_job(spec_json: str) -> bytes:
    """The Dask task: a JobSpec as JSON in, the JobResult as one wire message out.

    It runs in the Dask worker process, which keeps its own warm sandbox worker
    (``LocalExecutor(concurrency=1)``) across tasks. The Dask worker must run as root
    on a host where the input Parquet paths exist (same machine or shared storage
    mounted at the same path).
    """
    global _dask_local
    with _dask_lock:
        if _dask_local is None:
            from datasite.config import DASK_ENV

            # the releaser's scans connect back to the cluster with the site's settings
            env = {k: os.environ[k] for k in DASK_ENV.values() if os.environ.get(k)}
            _dask_local = LocalExecutor(concurrency=1, worker_env=env)
    spec = JobSpec.model_validate_json(spec_json)
    running = _dask_local.submit(spec)
    if spec.scan_cluster:
        from distributed import rejoin, secede

        # The job's scans are tasks too: on a worker of one thread they would wait for
        # this one, which waits for them. It leaves the thread pool while it waits.
        secede()
        try:
            result = running.result()
        finally:
            rejoin()
    else:
        result = running.result()
    return pack(*result_message(result))


class InsecureScheduler(ValueError):
    """A Dask scheduler the site refuses to talk to: not TLS, or no credentials."""


INSECURE_WARNING = (
    "DASK INSECURE OPT-OUT: the site talks to its Dask scheduler %s over plain TCP without "
    "credentials. Anyone who can reach the scheduler can run code as the Dask worker "
    "(root, next to the private data). Never do this outside a test."
)


def dask_security(ca_file: str, cert_file: str, key_file: str) -> Any:
    """Dask's ``Security`` for mutual TLS: the site proves itself with ``cert_file`` and
    ``key_file``, and trusts only a scheduler whose certificate ``ca_file`` signed."""
    from distributed.security import Security

    for what, path in (("CA", ca_file), ("certificate", cert_file), ("key", key_file)):
        if not os.path.isfile(path):
            raise InsecureScheduler(f"The Dask TLS {what} file {path!r} does not exist.")
    return Security(
        require_encryption=True,
        tls_ca_file=ca_file,
        tls_client_cert=cert_file,
        tls_client_key=key_file,
    )


def _dask_options_from_env() -> dict[str, Any]:
    from datasite.config import DASK_ENV

    found = {field: os.environ.get(name) or None for field, name in DASK_ENV.items()}
    allow = str(found.pop("dask_allow_insecure") or "").lower() in ("1", "true", "yes")
    files = (found["dask_tls_ca_file"], found["dask_tls_cert_file"], found["dask_tls_key_file"])
    security = dask_security(*files) if all(files) else None
    if any(files) and not all(files):
        raise InsecureScheduler(
            "Give all three of DATASITE_DASK_TLS_CA_FILE, DATASITE_DASK_TLS_CERT_FILE and "
            "DATASITE_DASK_TLS_KEY_FILE."
        )
    return {"security": security, "allow_insecure": allow}


def connect_scheduler(scheduler_address: str, security: Any = None, allow_insecure: bool = False,
                      timeout: float | None = None) -> Any:  # fmt: skip
    """A ``distributed.Client`` of the site's scheduler: over TLS, or refused.

    The scheduler runs whatever a connected client submits on workers that run as root
    next to the data, so a plain ``tcp://`` address is refused unless ``allow_insecure``
    (``DATASITE_DASK_ALLOW_INSECURE``, for tests), which is logged loudly.
    """
    from distributed import Client

    tls = scheduler_address.startswith("tls://")
    if tls and security is None:
        raise InsecureScheduler(
            f"The Dask scheduler {scheduler_address} needs TLS credentials: set "
            "DATASITE_DASK_TLS_CA_FILE, DATASITE_DASK_TLS_CERT_FILE and "
            "DATASITE_DASK_TLS_KEY_FILE."
        )
    if not tls:
        if not allow_insecure:
            raise InsecureScheduler(
                f"Refusing the Dask scheduler {scheduler_address!r}: the site talks to "
                "its scheduler only over TLS with credentials (a tls:// address and "
                "DATASITE_DASK_TLS_*). Anyone who reaches a plain scheduler runs code "
                "on the workers. DATASITE_DASK_ALLOW_INSECURE=1 overrides this (tests "
                "only)."
            )
        log.warning(INSECURE_WARNING, scheduler_address)
        security = None
    options = {} if timeout is None else {"timeout": timeout}  # None: Dask's own default
    return Client(scheduler_address, security=security, set_as_default=False, **options)


class DaskExecutor:
    """Runs jobs on a Dask distributed cluster, sandboxed on the Dask worker.

    Only JSON and bytes cross the cluster (``run_packed_job``): Dask moves a string in
    and a bytes object out, so no user value is ever pickled. Input paths in the
    JobSpec must be readable at the same path on every Dask worker.

    The scheduler runs whatever a connected client submits on workers that run as root
    next to the data, so the site reaches it only over mutual TLS (a ``tls://`` address
    and a ``security`` from :func:`dask_security`; the scheduler and workers require
    the same CA). A plain ``tcp://`` scheduler is refused unless ``allow_insecure`` (the
    ``DATASITE_DASK_ALLOW_INSECURE`` opt-out, for tests), which is logged loudly.

    With ``fan_out`` (the default) a data-blind job's releases over a partitioned input
    are scanned partition by partition as tasks on the same cluster
    (``datasite.execution.cluster_scans``); the workers need the site's
    ``DATASITE_DASK_*`` settings in their environment to connect back.
    """

    def __init__(
        self,
        scheduler_address: str,
        security: Any = None,
        allow_insecure: bool = False,
        fan_out: bool = True,
    ) -> None:
        self._client = connect_scheduler(scheduler_address, security, allow_insecure)
        #: data-blind jobs scan partitioned inputs as tasks on this same cluster
        self._fan_out = scheduler_address if fan_out else None
        self._pending: dict[str, Any] = {}
        self._remote_of: dict[Future[JobResult], Any] = {}
        self._lock = threading.Lock()

    def submit(self, spec: JobSpec) -> Future[JobResult]:
        future: Future[JobResult] = Future()
        future.set_running_or_notify_cancel()
        key = f"datasite-job-{spec.job_id}-{uuid.uuid4().hex}"
        if self._fan_out and spec.kind.data_blind:
            spec = spec.model_copy(update={"scan_cluster": self._fan_out})
        remote = self._client.submit(run_packed_job, spec.model_dump_json(), key=key, pure=False)
        with self._lock:
            self._pending[key] = remote  # a dropped Dask future would cancel the task
            self._remote_of[future] = remote

        def finish(done: Any) -> None:
            with self._lock:
                self._pending.pop(key, None)
                self._remote_of.pop(future, None)
            try:
                ((header, blobs),) = unpack_all(done.result())
                future.set_result(result_from_message(header, blobs))
            except Exception as exc:
                log.exception("dask lost job %s", spec.job_id)
                future.set_result(
                    _failed(spec, "WorkerCrashed", "The cluster failed during the run.", repr(exc))
                )

        remote.add_done_callback(finish)
        return future

    def cancel(self, future: Future[JobResult], force: bool = False) -> bool:
        """Cancel the job's Dask task. Dask cannot stop a task a worker already runs: it
        finishes there and its result is dropped; the future resolves at once either way
        (``WorkerCrashed``, counted as having read the data)."""
        with self._lock:
            remote = self._remote_of.get(future)
        if remote is None:
            return False
        remote.cancel()
        return True

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_executor(
    kind: str,
    concurrency: int = 2,
    scheduler: str | None = None,
    security: Any = None,
    allow_insecure: bool | None = None,
    worker_env: Mapping[str, str] | None = None,
) -> Executor:
    """The executor a site's settings ask for: ``"local"`` or ``"dask"``.

    For Dask, ``security`` and ``allow_insecure`` default to the ``DATASITE_DASK_*``
    variables (see ``datasite.config.DASK_ENV``).
    """
    if kind == "local":
        return LocalExecutor(concurrency=concurrency, worker_env=worker_env)
    if kind == "dask":
        if not scheduler:
            raise ValueError("The dask executor needs a scheduler address.")
        options = _dask_options_from_env()
        if security is not None:
            options["security"] = security
        if allow_insecure is not None:
            options["allow_insecure"] = allow_insecure
        return DaskExecutor(scheduler, **options)
    raise ValueError(f"Unknown executor kind {kind!r}; use 'local' or 'dask'.")
