"""The foundation end to end against a real server process (SQLite, or PostgreSQL in CI).

Owner uploads a dataset and creates a researcher; the researcher reads the mock, cannot
reach the real table, submits; the owner denies with a reason; the researcher sees it;
after a restart everything is still there.
"""

from __future__ import annotations

import httpx
import pandas as pd
import pytest

import researcher_kit as rk
from datasite import admin
from tests.conftest import RESEARCHER_EMAIL, RESEARCHER_PASSWORD, setup_site
from tests.server import OWNER_EMAIL, OWNER_PASSWORD

pytestmark = pytest.mark.integration

# A raw mean: the kind of request a reviewer denies.
MEAN_AGE = """
def mean_age(df):
    return float(df["age"].clip(18, 90).mean())
"""


def test_owner_and_researcher_flow_survives_restart(server) -> None:
    owner, researcher, real, mock = setup_site(server.url)

    # The researcher browses and reads the mock exactly as uploaded.
    dataset = researcher.datasets["Pings"]
    asset = dataset.assets["pings"]
    assert [c["name"] for c in asset.columns] == list(real.columns)
    pd.testing.assert_frame_equal(asset.mock, mock)
    assert asset.data["real_rows"] is None  # the exact private size is not for researchers
    assert owner.datasets["Pings"]["assets"][0]["real_rows"] == len(real)

    # No route serves the real table: try the obvious ones with the researcher's token.
    token = researcher.session.token
    for path in (
        "/datasets/Pings/assets/pings/real",
        "/datasets/Pings/assets/pings/data",
        "/datasets/Pings/assets/pings",
    ):
        response = httpx.get(
            f"{server.url}/api/v1{path}", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code in (404, 405)
        assert str(real["id"].iloc[0]) not in response.text or response.status_code != 200

    # Submit a request into a project.
    project = researcher.create_project("Engagement study", "mean age")
    assert project["owner"] == RESEARCHER_EMAIL
    body = {
        "project": "Engagement study",
        "dataset": "Pings",
        "entry": "mean_age",
        "source": MEAN_AGE,
        "bindings": {"df": "pings"},
        "epsilon": 0.5,
        "mechanisms": ["make_laplace"],
        "description": "mean age",
    }
    submitted = researcher.session.post("/requests", json=body)
    assert submitted["state"] == "submitted"
    assert submitted["source"] == MEAN_AGE

    # The owner reads the code verbatim and denies it once it is checked.
    mine = owner.requests.get(submitted["id"])
    assert mine.code == MEAN_AGE
    assert mine.source_hash == submitted["source_hash"]
    mine_checked = rk.client.Request(owner.session, mine.data).wait(until=("checked",))
    assert mine_checked.policy_report is not None
    owner.requests.get(submitted["id"]).deny("The mean is returned without noise.")

    seen = researcher.request(submitted["id"])
    assert seen.state == "denied"
    assert seen.deny_reason == "The mean is returned without noise."

    server.restart()

    owner = admin.connect(server.url, OWNER_EMAIL, OWNER_PASSWORD)
    researcher = rk.login(server.url, RESEARCHER_EMAIL, RESEARCHER_PASSWORD)
    assert [d.name for d in researcher.datasets.list()] == ["Pings"]
    pd.testing.assert_frame_equal(researcher.datasets["Pings"].assets["pings"].mock, mock)
    again = researcher.request(submitted["id"])
    assert (again.state, again.deny_reason) == ("denied", "The mean is returned without noise.")
    assert {u["email"] for u in owner.users.list()} >= {OWNER_EMAIL, RESEARCHER_EMAIL}
    actions = [e["action"] for e in owner.audit(limit=500)]
    for action in (
        "login",
        "dataset_uploaded",
        "user_created",
        "project_created",
        "request_submitted",
        "request_checked",
        "request_denied",
    ):
        assert action in actions
