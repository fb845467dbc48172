"""One login per CLI session: the token is kept in a private file and reused.

Real subprocesses against a real server, as an owner runs the commands in a shell.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from datasite import admin
from datasite.client.embedded import EmbeddedSite
from tests.server import OWNER_EMAIL, OWNER_PASSWORD

pytestmark = pytest.mark.integration


def cli(server: EmbeddedSite, config: Path, *args: str, password: str = OWNER_PASSWORD):  # type: ignore[no-untyped-def]
    env = {
        **os.environ,
        "DATASITE_URL": server.url,
        "DATASITE_EMAIL": OWNER_EMAIL,
        "DATASITE_PASSWORD": password,
        "DATASITE_CONFIG_DIR": str(config),
        "COLUMNS": "200",
        "NO_COLOR": "1",
    }
    env.pop("DATASITE_NO_TOKEN_CACHE", None)
    done = subprocess.run(
        [sys.executable, "-m", "datasite", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, done.stdout + done.stderr


def logins(owner: admin.OwnerClient) -> int:
    return len(owner.audit(action="login", actor=OWNER_EMAIL, limit=5000))


def test_commands_share_one_login_kept_in_a_private_file(
    server: EmbeddedSite, tmp_path: Path
) -> None:
    config = tmp_path / "config"
    owner = admin.connect(server.url, OWNER_EMAIL, OWNER_PASSWORD)
    before = logins(owner)
    for command in (("users", "list"), ("datasets", "list"), ("budgets", "list"), ("audit",)):
        code, out = cli(server, config, *command)
        assert code == 0, out
    assert logins(owner) == before + 1

    tokens = config / "tokens.json"
    assert stat.S_IMODE(tokens.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.stat().st_mode) & 0o077 == 0
    assert OWNER_PASSWORD not in tokens.read_text()

    # The kept token is no way around the password.
    code, out = cli(server, config, "users", "list", password="not-the-password")
    assert code == 1 and "email or password" in out.lower(), out

    # Logging out revokes the token; the next command logs in again.
    code, out = cli(server, config, "logout")
    assert code == 0 and "Logged out" in out, out
    assert "token" not in tokens.read_text()
    failed_logins = len(owner.audit(action="login_failed", limit=5000))
    code, out = cli(server, config, "users", "list")
    assert code == 0, out
    assert logins(owner) == before + 2
    assert len(owner.audit(action="login_failed", limit=5000)) == failed_logins


def test_archive_and_delete_from_the_cli(server: EmbeddedSite, tmp_path: Path) -> None:
    from tests.conftest import pings_tables

    config = tmp_path / "config"
    real, mock = pings_tables(rows=30, mock_rows=10)
    real.to_parquet(tmp_path / "real.parquet")
    mock.to_parquet(tmp_path / "mock.parquet")
    upload = ("--real", str(tmp_path / "real.parquet"), "--mock", str(tmp_path / "mock.parquet"))
    code, out = cli(server, config, "datasets", "upload", "a/b", *upload)
    assert code == 1 and "not a valid dataset name" in out and "Traceback" not in out, out
    assert cli(server, config, "datasets", "upload", "Scratch", *upload)[0] == 0
    code, out = cli(server, config, "datasets", "archive", "Scratch")
    assert code == 0 and "Archived Scratch" in out, out
    assert "Scratch (archived)" in cli(server, config, "datasets", "list")[1]
    assert cli(server, config, "datasets", "restore", "Scratch")[0] == 0
    code, out = cli(server, config, "datasets", "delete", "Scratch", "--yes")
    assert code == 0 and "Deleted dataset 'Scratch'" in out, out
    code, out = cli(server, config, "datasets", "delete", "Scratch", "--yes")
    assert code == 1 and "There is no dataset 'Scratch'" in out, out
