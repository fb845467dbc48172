"""The HTTP session both clients use: bearer token, readable errors, streamed uploads."""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from datasite.contract.tables import write_upload

#: A connection that broke under a call (reset, closed before the answer, a failed write).
BROKEN_CONNECTION = (httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError)


class DatasiteError(RuntimeError):
    """The site refused a call; ``str(error)`` is the site's own explanation.

    ``status`` is the HTTP status code (403 for a role the route does not allow, 409 for a
    state change the lifecycle forbids, 422 for invalid input, ...).
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class DevPasswordWarning(UserWarning):
    """The site runs with the fixed development owner password."""


class ApiSession:
    """An authenticated connection to a datasite's ``/api/v1``.

    >>> session = ApiSession.login(url, "bob@uni.example", "pw")  # doctest: +SKIP
    >>> session.get("/datasets")  # doctest: +SKIP
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """``transport`` carries the calls (``httpx``'s own by default; a test's
        in-process app, see ``tests/inprocess.py``)."""
        self.url = url.rstrip("/")
        self.transport = transport
        self.http = httpx.Client(
            base_url=f"{self.url}/api/v1", timeout=timeout, transport=transport
        )
        self.token = token
        self.user: dict[str, Any] = {}
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"

    @classmethod
    def login(
        cls, url: str, email: str, password: str, transport: httpx.BaseTransport | None = None
    ) -> ApiSession:
        session = cls(url, transport=transport)
        body = session.post("/auth/login", json={"email": email, "password": password})
        if body.get("warning"):
            warnings.warn(body["warning"], DevPasswordWarning, stacklevel=3)
        session.token = body["token"]
        session.user = body["user"]
        session.http.headers["Authorization"] = f"Bearer {session.token}"
        return session

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._send(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise DatasiteError(0, f"Cannot reach the datasite at {self.url}: {exc}") from exc
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise DatasiteError(response.status_code, str(detail))
        if response.status_code == 204 or not response.content:
            return None
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.content

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one call. A read (``GET``) whose connection broke before the answer came
        is sent once more: a reused connection may have been closed by the site or a
        proxy as it went out, and a read changed nothing, so one broken connection need
        not fail a notebook's wait or drop a site from a federated plan. A call that
        changes something is never sent twice, and neither a refused connection (the site
        is down) nor a timeout is retried."""
        try:
            return self.http.request(method, path, **kwargs)
        except BROKEN_CONNECTION:
            if method != "GET":
                raise
            return self.http.request(method, path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Any:
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Any:
        return self.request("PATCH", path, **kwargs)

    def get_table(self, path: str) -> pd.DataFrame:
        """A Parquet response as a DataFrame."""
        return pq.read_table(pa.BufferReader(self.get(path))).to_pandas()

    def upload_table(self, table: Any, label: str = "table", progress: bool = True) -> dict:
        """Stream a table to ``/uploads`` as Parquet, in 1 MiB chunks with a progress bar.

        ``table`` is a DataFrame, the path of a ``.parquet`` file (sent as it is), the
        path of a ``.csv`` file, or an iterable of DataFrame chunks; CSV files and chunks
        are converted batch by batch to a temporary Parquet file first, so a table larger
        than memory uploads in bounded memory.
        """
        with tempfile.TemporaryDirectory() as folder:
            if isinstance(table, str | Path) and Path(table).suffix.lower() == ".parquet":
                path = Path(table)
            else:
                path = Path(folder) / "upload.parquet"
                write_upload(table, path)
            size = path.stat().st_size
            return self.post(
                "/uploads",
                content=_chunks(path, size, label, progress),
                headers={
                    "content-type": "application/vnd.apache.parquet",
                    "content-length": str(size),
                },
                timeout=max(60.0, size / 20e6),  # a large table takes its time on the wire
            )

    def close(self) -> None:
        self.http.close()


def progress_shown(asked: bool = True) -> bool:
    """Progress bars show unless the caller or ``DATASITE_NO_PROGRESS`` turns them off."""
    return asked and not os.environ.get("DATASITE_NO_PROGRESS")


def in_notebook_without_widgets() -> bool:
    """rich draws its live progress in Jupyter with ipywidgets, and warns on every draw
    when they are missing; a plain text line serves there instead."""
    from rich.console import Console

    if not Console().is_jupyter:
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return True
    return False


def _chunks(path: Path, size: int, label: str, progress: bool) -> Iterator[bytes]:
    from rich.progress import Progress

    show = progress_shown(progress)
    if show and in_notebook_without_widgets():
        print(f"Uploading {label} ({size / 2**20:.1f} MiB) ...", flush=True)
        show = False
    with Progress(disable=not show, transient=True) as bar, path.open("rb") as source:
        task = bar.add_task(f"Uploading {label}", total=size)
        while chunk := source.read(1024 * 1024):
            bar.advance(task, len(chunk))
            yield chunk
