"""The ``datasite`` command, as the README shows it, against a real server process.

Each call is a real subprocess with the site's address and the owner's credentials in
``DATASITE_*`` variables, as an owner would set them in a shell.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import researcher_kit as rk
from datasite.client.embedded import EmbeddedSite
from tests.conftest import pings_tables
from tests.flows import submit_source, wait_state
from tests.server import OWNER_EMAIL, OWNER_PASSWORD

pytestmark = pytest.mark.integration

#: The CLI keeps its login token here, not in the home folder of whoever runs the tests.
CONFIG_DIR = tempfile.mkdtemp(prefix="datasite-cli-config-")


def cli(server: EmbeddedSite, *args: str, password: str = OWNER_PASSWORD) -> tuple[int, str]:
    env = {
        **os.environ,
        "DATASITE_URL": server.url,
        "DATASITE_EMAIL": OWNER_EMAIL,
        "DATASITE_PASSWORD": password,
        "DATASITE_CONFIG_DIR": CONFIG_DIR,
        "COLUMNS": "250",
        "NO_COLOR": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "datasite", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    return done.returncode, done.stdout + done.stderr


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tables")
    real, mock = pings_tables()
    real.to_parquet(folder / "real.parquet")
    mock.to_parquet(folder / "mock.parquet")
    mock.drop(columns=["age"]).to_csv(folder / "mock_without_age.csv", index=False)
    (folder / "policy.yaml").write_text("max_epsilon_per_request: 0.5\nnon_dp_outputs: review\n")
    return folder


def test_the_owner_runs_the_readme_commands(shared_server: EmbeddedSite, tables: Path) -> None:
    code, out = cli(
        shared_server, "datasets", "upload", "Pings", "--real", str(tables / "real.parquet"),
        "--mock", str(tables / "mock.parquet"), "--asset", "pings",
    )  # fmt: skip
    assert (code, out.strip()) == (0, "Uploaded Pings.")
    code, out = cli(shared_server, "users", "create", "bob@uni.example", "Dr. Bob")
    assert code == 0, out
    bob_password = re.search(r"one-time password: (\S+)", out).group(1)
    code, out = cli(shared_server, "budgets", "grant", "bob@uni.example", "Pings", "3.0")
    assert (code, out.strip()) == (0, "bob@uni.example may spend epsilon=3 on Pings (3 left).")
    code, out = cli(
        shared_server, "policies", "set", "Pings",
        "--field", "max_epsilon_per_request=1.0", "--field", "auto_approve=true",
    )  # fmt: skip
    policy = json.loads(out)
    assert code == 0 and (policy["max_epsilon_per_request"], policy["auto_approve"]) == (1.0, True)
    code, out = cli(
        shared_server, "policies", "set", "Pings", "--file", str(tables / "policy.yaml")
    )
    policy = json.loads(out)
    assert code == 0 and policy["max_epsilon_per_request"] == 0.5
    assert policy["non_dp_outputs"] == "review" and policy["auto_approve"] is False  # whole file

    researcher = rk.login(shared_server.url, "bob@uni.example", bob_password)
    researcher.create_project("Study")
    source = "def raw_mean(df):\n    return float(df['age'].mean())\n"
    request_id = submit_source(researcher.session, source, "raw_mean", epsilon=0.1)
    wait_state(researcher.session, request_id, ("checked",))
    code, out = cli(shared_server, "requests", "list", "--state", "checked")
    assert code == 0 and re.search(rf"\b{request_id}\b.*bob@uni.example.*raw_mean", out), out
    code, out = cli(shared_server, "requests", "show", str(request_id))
    assert code == 0 and "return float(df['age'].mean())" in out and "Verdict" in out
    code, out = cli(shared_server, "requests", "deny", str(request_id), "Returns the raw mean.")
    assert (code, out.strip()) == (0, f"Request {request_id} denied.")
    assert researcher.request(request_id).deny_reason == "Returns the raw mean."
    code, out = cli(shared_server, "audit", "--action", "request_denied")
    assert code == 0 and "request_denied" in out and OWNER_EMAIL in out
    for listing, expected in (
        (("users", "list"), "bob@uni.example"),
        (("datasets", "list"), "pings"),
        (("budgets", "list"), "bob@uni.example"),
    ):
        code, out = cli(shared_server, *listing)
        assert code == 0 and expected in out, out


def test_mistakes_get_one_clear_line_and_change_nothing(
    shared_server: EmbeddedSite, tables: Path
) -> None:
    code, out = cli(shared_server, "datasets", "list", password="not-the-password")
    assert code == 1 and "Traceback" not in out
    assert "email or password" in out.lower(), out

    code, out = cli(
        shared_server, "datasets", "upload", "Broken", "--real", str(tables / "real.parquet"),
        "--mock", str(tables / "mock_without_age.csv"), "--asset", "pings",
    )  # fmt: skip
    assert code == 1 and "Traceback" not in out
    assert "column 'age' is only in the real table" in out, out
    assert "Broken" not in cli(shared_server, "datasets", "list")[1]

    code, out = cli(shared_server, "users", "create", "not-an-email", "Nobody")
    assert code == 1 and "Traceback" not in out and "email" in out.lower(), out
    assert "not-an-email" not in cli(shared_server, "users", "list")[1]

    before = cli(shared_server, "policies", "show", "Pings")[1]
    code, out = cli(
        shared_server, "policies", "set", "Pings", "--field", "max_epsilon_per_request=-1"
    )
    assert code == 1 and "Traceback" not in out and "max_epsilon_per_request" in out, out
    code, out = cli(
        shared_server, "policies", "set", "Pings", "--file", str(tables / "no-such-file.yaml")
    )
    assert code == 1 and "Traceback" not in out and "no-such-file.yaml" in out, out
    assert cli(shared_server, "policies", "show", "Pings")[1] == before
