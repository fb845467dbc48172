"""A datasite in a child process on this machine: for the demo, notebooks and tests.

>>> with EmbeddedSite(Path(tempfile.mkdtemp()), owner_email="o@x.example",
...                   owner_password="a-long-password") as site:  # doctest: +SKIP
...     print(site.url)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmbeddedSite:
    """Start, stop, kill and restart one ``datasite serve`` process.

    The process runs in its own session (process group), so ``kill()`` takes its sandbox
    workers down with it, as a crash of the machine would.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        database_url: str | None = None,
        owner_email: str | None = None,
        owner_password: str | None = None,
        dev: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            k: v
            for k, v in {
                "DATASITE_DATABASE_URL": database_url,
                "DATASITE_OWNER_EMAIL": owner_email,
                "DATASITE_OWNER_PASSWORD": owner_password,
                "DATASITE_DEV_MODE": "1" if dev else None,
            }.items()
            if v
        } | (env or {})
        self.log_path = self.data_dir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> EmbeddedSite:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "datasite",
                    "serve",
                    "--port",
                    str(self.port),
                    "--data-dir",
                    str(self.data_dir),
                ],
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"The datasite exited at start:\n{self.log()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"The datasite did not start in {timeout:g}s:\n{self.log()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> EmbeddedSite:
        self.stop()
        return self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> EmbeddedSite:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
