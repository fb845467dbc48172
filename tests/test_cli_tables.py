"""The CLI's tables in an 80-column terminal (``COLUMNS=80``, a real subprocess against a
real server): no line is wider than the terminal, no cell is cut short with "…", and
every value can be read whole down its column (a long one folds onto the next lines).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from datasite import admin
from datasite.client.embedded import EmbeddedSite
from tests.conftest import pings_tables
from tests.server import OWNER_EMAIL, OWNER_PASSWORD

pytestmark = pytest.mark.integration

LONG_EMAIL = "a.researcher.with.a.long.name@university-hospital.example"
DATASET = "Breast cancer Wisconsin diagnostic"
SUMMARY = "569 tumours from fine-needle aspirates of breast masses, 30 features each"
ENTRY = "histogram_of_diagnosis_by_age_band"
WIDTH = 80


def cli(server: EmbeddedSite, config: Path, *args: str) -> str:
    env = {
        **os.environ,
        "DATASITE_URL": server.url,
        "DATASITE_EMAIL": OWNER_EMAIL,
        "DATASITE_PASSWORD": OWNER_PASSWORD,
        "DATASITE_CONFIG_DIR": str(config),
        "COLUMNS": str(WIDTH),
        "NO_COLOR": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "datasite", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def columns(table: str) -> dict[str, str]:
    """Each column's text read down the table, whitespace dropped: what a person reads
    when they follow a column (a folded value continues on the next line)."""
    lines = table.rstrip("\n").splitlines()
    rule = next(i for i, line in enumerate(lines) if set(line.strip()) == {"─"})
    header = lines[rule - 1]
    names = re.split(r"\s{2,}", header.strip())
    starts = [header.index(name) for name in names]
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    return {
        name: re.sub(r"\s", "", "".join(line[a:b] for line in lines[rule + 1 :]))
        for name, (a, b) in zip(names, bounds, strict=True)
    }


def readable(table: str, expected: dict[str, list[str]]) -> None:
    assert "…" not in table, table
    too_wide = [line for line in table.splitlines() if len(line) > WIDTH]
    assert not too_wide, table
    found = columns(table)
    for column, values in expected.items():
        for value in values:
            assert re.sub(r"\s", "", value) in found[column], (column, value, table)


def test_tables_are_readable_at_80_columns(server: EmbeddedSite, tmp_path: Path) -> None:
    owner = admin.connect(server.url, OWNER_EMAIL, OWNER_PASSWORD)
    real, mock = pings_tables()
    owner.datasets.upload(
        name=DATASET, assets={"tumours": (real, mock)}, summary=SUMMARY, progress=False
    )
    password = "long-password-123"
    owner.users.create(email=LONG_EMAIL, name="Dr. Long", role="researcher", password=password)
    owner.budgets.grant(LONG_EMAIL, DATASET, epsilon=3.0)
    import researcher_kit as rk

    researcher = rk.login(server.url, LONG_EMAIL, password)
    researcher.create_project("Study")
    body = f"def {ENTRY}(df):\n    return 1\n"
    session = researcher.session
    session.post(
        "/requests",
        json={
            "project": "Study", "dataset": DATASET, "entry": ENTRY, "source": body,
            "bindings": {"df": "tumours"}, "epsilon": 0.1, "kind": "mechanism",
        },
    )  # fmt: skip
    config = tmp_path / "config"

    readable(
        cli(server, config, "requests", "list"),
        {"author": [LONG_EMAIL], "dataset": [DATASET], "entry": [ENTRY]},
    )
    readable(
        cli(server, config, "datasets", "list"),
        {"name": [DATASET], "assets": ["tumours"], "summary": [SUMMARY]},
    )
    readable(
        cli(server, config, "budgets", "list"),
        {"email": [LONG_EMAIL], "dataset": [DATASET], "ε granted": ["3"], "ε left": ["3"]},
    )
    readable(cli(server, config, "users", "list"), {"email": [LONG_EMAIL, OWNER_EMAIL]})
    readable(
        cli(server, config, "audit", "--limit", "20"),
        {"actor": [LONG_EMAIL, OWNER_EMAIL], "action": ["dataset_uploaded", "budget_granted"]},
    )
