"""Concurrent approvals never overspend a grant (SQLite here, PostgreSQL in CI)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from datasite.client.http import DatasiteError
from tests.conftest import RESEARCHER_EMAIL, setup_site
from tests.flows import submit_source, wait_state

pytestmark = pytest.mark.integration

CONSTANT = "def answer(df):\n    return 42\n"


def test_twenty_concurrent_approvals_stay_within_the_grant(server) -> None:
    owner, researcher, _, _ = setup_site(server.url)
    researcher.create_project("Study")
    owner.budgets.grant(RESEARCHER_EMAIL, "Pings", epsilon=3.0)
    ids = [submit_source(researcher.session, CONSTANT, "answer", epsilon=0.5) for _ in range(20)]
    for request_id in ids:
        wait_state(owner.session, request_id, ("checked",))

    def approve(request_id: int) -> str:
        try:
            owner.session.post(
                f"/requests/{request_id}/approve", json={"justification": "race test"}
            )
            return "approved"
        except DatasiteError as exc:
            assert exc.status == 409, str(exc)
            assert "Not enough budget" in str(exc)
            return "refused"

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(approve, ids))

    assert outcomes.count("approved") == 6
    assert outcomes.count("refused") == 14
    grant = next(g for g in owner.budgets.list() if g["email"] == RESEARCHER_EMAIL)
    assert grant["spent_epsilon"] == pytest.approx(3.0)
    assert grant["remaining_epsilon"] == pytest.approx(0.0)
    reserved = [e for e in owner.budgets.ledger() if e["kind"] == "reserve"]
    assert len(reserved) == 6
    assert sum(e["epsilon"] for e in reserved) == pytest.approx(3.0)
    assert all(e["audit_event_id"] for e in reserved)
    states = [owner.requests.get(i).state for i in ids]
    assert sum(s != "checked" for s in states) == 6
    # the refused ones are still waiting, unchanged
    assert states.count("checked") == 14
