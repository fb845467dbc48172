"""The clients' HTTP session on a real socket: a connection that breaks under a call.

A tiny server resets the first connection it accepts (as a site or proxy closing a
reused connection at the moment the call goes out does) and answers properly after.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from datasite.client.http import ApiSession, DatasiteError

ANSWER = (
    b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok": 1}\r\n'
)


class ResetsFirst:
    """Listens on 127.0.0.1; resets its first ``resets`` connections after reading a
    call, answers every later one. ``calls`` holds each call's first line."""

    def __init__(self, resets: int = 1) -> None:
        self.resets = resets
        self.calls: list[str] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                self.calls.append(conn.recv(65536).split(b"\r\n", 1)[0].decode())
                if len(self.calls) <= self.resets:  # close with RST, not FIN
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                else:
                    conn.sendall(ANSWER)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def server() -> Iterator[ResetsFirst]:
    site = ResetsFirst()
    yield site
    site.close()


def test_a_read_whose_connection_is_reset_is_sent_once_more(server: ResetsFirst) -> None:
    assert ApiSession(server.url).get("/requests/1/next") == {"ok": 1}
    assert server.calls == ["GET /api/v1/requests/1/next HTTP/1.1"] * 2


def test_a_call_that_changes_something_is_never_sent_twice(server: ResetsFirst) -> None:
    with pytest.raises(DatasiteError, match="Cannot reach the datasite at") as caught:
        ApiSession(server.url).post("/requests/1/approve", json={})
    assert caught.value.status == 0
    assert server.calls == ["POST /api/v1/requests/1/approve HTTP/1.1"]


def test_a_read_is_retried_once_only() -> None:
    site = ResetsFirst(resets=2)
    try:
        with pytest.raises(DatasiteError, match="Cannot reach the datasite at"):
            ApiSession(site.url).get("/datasets")
        assert len(site.calls) == 2
    finally:
        site.close()
