"""``datasite serve``: claim the port and the data folder, say where everything is, run.

Before anything is created the port is bound: a second server on the same port stops
with one clear line and leaves no data folder or database behind. The data folder is
then locked (an exclusive ``flock`` on ``datasite.lock``, released when the process
ends), so a second server on the same folder stops instead of sharing its database.

The console shows the address, the data folder, the database (password masked), the
executor and then ``ready``; runs and their failures are logged at INFO with ids and
error type names only, never a value from the data.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from datasite.config import Settings

log = logging.getLogger("datasite")
LOCK_FILE = "datasite.lock"
#: How long a stopping server lets open HTTP requests finish before it closes them.
CONNECTIONS_GRACE_SECONDS = 5.0
#: How long the server keeps an idle connection open. Longer than any client keeps one
#: for reuse (httpx: 5 s, the researcher's and the owner's clients): were the two equal,
#: as uvicorn's default 5 s is, a client that waited about 5 s between two calls (a
#: notebook polling a run) would now and then send its call on a connection the server
#: was closing, and get "Connection reset by peer" (1 call in 96 here, measured).
KEEP_ALIVE_SECONDS = 75


class ServeError(RuntimeError):
    """The server cannot start; the message says why and what to do."""


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``, or a ``ServeError`` naming who holds it."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise ServeError(f"Cannot listen on {host!r}: {exc.strerror}.") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ServeError(
            f"Port {port} on {host} is already in use (another datasite or another program "
            f"listens there: {exc.strerror}). Nothing was created; stop that server or "
            "choose another port with --port."
        ) from None
    sock.set_inheritable(False)
    return sock


class DataDirLock:
    """An exclusive lock on a data folder for this process's lifetime.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> first = DataDirLock(folder)
    >>> try:
    ...     DataDirLock(folder)
    ... except ServeError as refused:
    ...     print(str(refused).split(")")[1][:30])
     is using the data folder /...
    >>> first.release(); DataDirLock(folder).release()
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        data_dir.mkdir(parents=True, exist_ok=True)
        self.fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(self.fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(self.fd)
            self.fd = None
            raise ServeError(
                f"Another datasite (process {holder}) is using the data folder {data_dir}; "
                "two servers must not share one database. Stop it first, or give this one "
                "another --data-dir."
            ) from None
        os.ftruncate(self.fd, 0)
        os.write(self.fd, f"{os.getpid()}\n".encode())

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the lock
            self.fd = None


def masked_database_url(settings: Settings) -> str:
    """The database URL as the console shows it: any password replaced by ``***``.

    >>> s = Settings(data_dir=Path("/d"), database_url="postgresql://app:s3cret@db/site")
    >>> masked_database_url(s)
    'postgresql://app:***@db/site'
    """
    from sqlalchemy.engine import make_url

    url = settings.resolved_database_url()
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy parses: show only its scheme
        return url.split(":", 1)[0] + "://***"


def describe_executor(settings: Settings) -> str:
    if settings.executor == "dask":
        return f"dask, scheduler {settings.scheduler_address or '(local cluster)'}"
    return f"{settings.executor}, {settings.executor_concurrency} parallel run(s)"


def banner(settings: Settings, version: str) -> str:
    display_host = f"[{settings.host}]" if ":" in settings.host else settings.host
    address = f"http://{display_host}:{settings.port}"
    return "\n".join(
        [
            f"datasite {version}",
            f"  listening on  {address}  (review pages at /, API docs at /docs)",
            f"  data folder   {settings.data_dir}",
            f"  database      {masked_database_url(settings)}",
            f"  executor      {describe_executor(settings)}",
        ]
    )


class RunLog:
    """Logs each change of a request's state and its latest run at INFO.

    Hooked into the site's ``StateWatch``, which the reviewer and the runner notify after
    each commit; the log line is written on its own thread from a small read, so no route
    waits for it. Only ids, states, durations and error type names are logged.
    """

    def __init__(self, site: Any) -> None:
        self.site = site
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="datasite-log")
        self.seen: dict[int, tuple] = {}
        notify = site.watch.changed

        def changed(request_id: int) -> None:
            notify(request_id)
            try:
                self.pool.submit(self.log, request_id)
            except RuntimeError:  # shutting down
                pass

        site.watch.changed = changed

    def log(self, request_id: int) -> None:
        from sqlalchemy import func, select

        from datasite.db.models import CodeRequest, RequestRun

        latest = (
            select(func.max(RequestRun.id))
            .where(RequestRun.request_id == request_id)
            .scalar_subquery()
        )
        query = (
            select(
                CodeRequest.state,
                RequestRun.id,
                RequestRun.state,
                RequestRun.error_type,
                RequestRun.duration_seconds,
            )
            .outerjoin(RequestRun, RequestRun.id == latest)
            .where(CodeRequest.id == request_id)
        )
        try:
            with self.site.sessions() as db:
                row = db.execute(query).first()
                db.rollback()
        except Exception as exc:  # the log must never break a run
            log.warning("request %s: could not read its state (%s)", request_id, type(exc).__name__)
            return
        if row is None:
            return
        state, run_id, run_state, error_type, seconds = row
        key = (state, run_id, run_state)
        if self.seen.get(request_id) == key:
            return
        self.seen[request_id] = key
        if run_id is not None and run_state == "failed":
            log.info(
                "request %s: run %s failed: %s (%s)",
                request_id,
                run_id,
                error_type or "error",
                "duration unknown" if seconds is None else f"{seconds:.1f} s",
            )
        elif run_id is not None and run_state == "released" and state == "released":
            log.info("request %s: run %s released (%.1f s)", request_id, run_id, seconds or 0.0)
        elif run_id is not None and run_state == "running":
            log.info("request %s: run %s started", request_id, run_id)
        else:
            log.info("request %s is %s", request_id, state)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("datasite")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False


def serve(settings: Settings, version: str) -> None:
    """Run a datasite until interrupted; ``ServeError`` when it cannot start."""
    import uvicorn

    sock = bind(settings.host, settings.port)
    lock: DataDirLock | None = None
    run_log: RunLog | None = None
    try:
        lock = DataDirLock(settings.data_dir)
        configure_logging()
        print(banner(settings, version), flush=True)

        from datasite.app import create_app

        app = create_app(settings)
        run_log = RunLog(app.state.site)

        site = app.state.site

        class Server(uvicorn.Server):
            async def startup(self, sockets: list[socket.socket] | None = None) -> None:
                await super().startup(sockets=sockets)
                if not self.should_exit:
                    print("ready", flush=True)

            def handle_exit(self, sig: int, frame: Any) -> None:
                if self.should_exit:  # again: cancel the runs now, but still record them
                    site.runner.hurry()
                    return
                super().handle_exit(sig, frame)

            async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
                # Ctrl-C or SIGTERM: say at once which runs are in flight; the site's
                # close (lifespan) then waits for them, or cancels them, and records each.
                site.runner.begin_shutdown(settings.shutdown_grace_seconds)
                await super().shutdown(sockets=sockets)
                log.info("stopped")

        # Open requests (a notebook's long poll) get a few seconds, not their full timeout.
        config = uvicorn.Config(
            app,
            log_level="warning",
            timeout_graceful_shutdown=CONNECTIONS_GRACE_SECONDS,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
        )
        Server(config).run(sockets=[sock])
    finally:
        if run_log is not None:
            run_log.close()
        sock.close()
        if lock is not None:
            lock.release()
