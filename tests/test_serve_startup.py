"""``datasite serve`` as a person starts it: what it prints, what it refuses, what it logs.

Real subprocesses: the console output is the point.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from datasite.client.embedded import EmbeddedSite, free_port
from datasite.config import Settings
from datasite.serve import KEEP_ALIVE_SECONDS, banner, masked_database_url
from tests.conftest import setup_site
from tests.flows import approve_as_owner, submit_source, wait_state
from tests.server import OWNER_EMAIL, OWNER_PASSWORD

pytestmark = pytest.mark.integration


def serve(data_dir: Path, port: int, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """A ``datasite serve`` that is expected to refuse (and so to exit by itself)."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "datasite",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
        ],
        env={**os.environ, "COLUMNS": "250", "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def site(tmp_path: Path):  # type: ignore[no-untyped-def]
    server = EmbeddedSite(
        tmp_path / "site", owner_email=OWNER_EMAIL, owner_password=OWNER_PASSWORD
    ).start()
    try:
        yield server
    finally:
        server.stop()


def test_serve_says_where_it_listens_and_what_it_uses_then_ready(site: EmbeddedSite) -> None:
    log = site.log()
    assert f"listening on  http://127.0.0.1:{site.port}" in log
    assert f"data folder   {site.data_dir}" in log
    assert f"database      sqlite:///{site.data_dir / 'datasite.db'}" in log
    assert "executor      local, 2 parallel run(s)" in log
    assert log.rstrip().splitlines()[-1] == "ready" or "\nready\n" in log, log
    assert log.index("executor") < log.index("ready")


def test_an_idle_connection_outlives_the_clients_own_keep_alive(site: EmbeddedSite) -> None:
    """httpx reuses an idle connection for 5 s. Had the server closed it at 5 s too, a
    call sent at that moment met a closing socket ("Connection reset by peer")."""
    client_keep_alive = httpx.Limits().keepalive_expiry or 0.0
    assert KEEP_ALIVE_SECONDS > client_keep_alive
    conn = http.client.HTTPConnection("127.0.0.1", site.port, timeout=10)

    def health() -> tuple[int, bytes]:
        conn.request("GET", "/api/v1/health")
        answer = conn.getresponse()
        return answer.status, answer.read()

    try:
        assert health() == (200, b'{"status":"ok"}')
        first = conn.sock
        time.sleep(client_keep_alive + 1.0)  # idle past the moment the client may reuse it
        assert health() == (200, b'{"status":"ok"}')  # the server closed it: RemoteDisconnected
        assert conn.sock is first  # one connection, both calls
    finally:
        conn.close()


def test_the_database_password_is_never_printed() -> None:
    settings = Settings(
        data_dir=Path("/srv/site"), database_url="postgresql://app:hunter2@db.example/site"
    )
    shown = banner(settings, "1.0")
    assert "hunter2" not in shown and "postgresql://app:***@db.example/site" in shown
    # A URL SQLAlchemy cannot parse shows only its scheme.
    assert masked_database_url(Settings(data_dir=Path("/d"), database_url="x:y@z")) == "x://***"


def test_a_second_server_on_the_same_port_refuses_before_creating_anything(
    site: EmbeddedSite, tmp_path: Path
) -> None:
    other = tmp_path / "other-site"
    done = serve(other, site.port)
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout + done.stderr
    assert f"Port {site.port} on 127.0.0.1 is already in use" in out and "--port" in out
    assert "Traceback" not in out
    assert not other.exists()  # no data folder, no database
    assert httpx.get(f"{site.url}/api/v1/health").status_code == 200


def test_a_second_server_on_the_same_data_folder_refuses(site: EmbeddedSite) -> None:
    done = serve(site.data_dir, free_port())
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "Another datasite" in out and str(site.data_dir) in out and "Traceback" not in out
    assert httpx.get(f"{site.url}/api/v1/health").status_code == 200
    # The lock goes with the process: once stopped, the folder can be served again.
    site.stop()
    site.start()
    assert httpx.get(f"{site.url}/api/v1/health").status_code == 200


def test_runs_and_failures_are_logged_with_ids_and_error_types_only(site: EmbeddedSite) -> None:
    owner, researcher, _, _ = setup_site(site.url)
    researcher.create_project("Study")
    owner.budgets.grant("bob@uni.example", "Pings", epsilon=5.0)
    good = submit_source(
        researcher.session, "def n(df):\n    return int(len(df))\n", "n", epsilon=0.1
    )
    bad = submit_source(
        researcher.session,
        "def boom(df):\n    raise ValueError(f'secret row {df.iloc[0].to_dict()}')\n",
        "boom",
        epsilon=0.1,
    )
    for request_id in (good, bad):
        approve_as_owner(owner.session, request_id)
        wait_state(owner.session, request_id, ("released", "failed"))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "failed: " not in site.log():
        time.sleep(0.2)  # the log line is written on its own thread, after the commit
    log = site.log()
    assert f"request {good}: run" in log and "released" in log, log
    assert f"request {bad}: run" in log and "failed: " in log, log
    assert "secret row" not in log and "online_hours" not in log
