"""Closing a request approved for several runs: no more runs, the unused ones refunded once.

In process (``tests.inprocess``): the rule lives in ``Runner.close``; the route, the
researcher's ``Request.close`` and the ledger are the usual ones.
"""

from __future__ import annotations

import pytest

from datasite.client.http import DatasiteError
from tests.conftest import RESEARCHER_EMAIL
from tests.flows import NOISY_COUNT, approve_as_owner, submit_source, wait_state


def spent(owner) -> float:  # type: ignore[no-untyped-def]
    grants = [g for g in owner.budgets.list() if g["email"] == RESEARCHER_EMAIL]
    if not grants:
        owner.budgets.grant(RESEARCHER_EMAIL, "Pings", epsilon=10.0)
        return spent(owner)
    return grants[0]["spent_epsilon"]


def test_closing_refunds_the_runs_never_made_once(inprocess_study_clients) -> None:  # type: ignore[no-untyped-def]
    owner, researcher = inprocess_study_clients
    before = spent(owner)
    request_id = submit_source(researcher.session, NOISY_COUNT, "noisy_count", epsilon=0.1, runs=3)
    approve_as_owner(owner.session, request_id)
    wait_state(researcher.session, request_id, ("released",))
    assert spent(owner) - before == pytest.approx(0.3)  # three runs reserved at approval
    closed = researcher.request(request_id).close()
    assert (closed.data["state"], closed.data["runs_used"]) == ("released", 1)
    assert spent(owner) - before == pytest.approx(0.1)  # the two runs never made came back
    refunds = [e for e in owner.budgets.ledger() if e["request_id"] == request_id]
    assert [e["kind"] for e in refunds] == ["reserve", "refund"]
    assert refunds[1]["epsilon"] == pytest.approx(-0.2)
    with pytest.raises(DatasiteError, match="used all 1 of its runs") as again:
        researcher.request(request_id).run()
    assert again.value.status == 409
    with pytest.raises(DatasiteError, match="nothing to close") as twice:
        researcher.request(request_id).close()
    assert twice.value.status == 409
    assert spent(owner) - before == pytest.approx(0.1)
    event = owner.audit(action="request_closed")[0]
    assert event["target_id"] == str(request_id) and event["detail"]["refunded_runs"] == 2


def test_a_request_with_no_runs_left_or_unknown_cannot_be_closed(inprocess_study_clients) -> None:  # type: ignore[no-untyped-def]
    owner, researcher = inprocess_study_clients
    request_id = submit_source(researcher.session, NOISY_COUNT, "noisy_count", epsilon=0.1)
    approve_as_owner(owner.session, request_id)
    wait_state(researcher.session, request_id, ("released",))
    before = spent(owner)
    with pytest.raises(DatasiteError, match="0 run\\(s\\) left") as done:
        researcher.request(request_id).close()
    assert done.value.status == 409
    with pytest.raises(DatasiteError) as missing:
        researcher.session.post("/requests/99999999/close")
    assert missing.value.status == 404
    assert spent(owner) == before


@pytest.mark.integration  # runs again on PostgreSQL, which enforces column lengths
def test_the_longest_email_and_dataset_name_are_granted(inprocess_study_clients) -> None:  # type: ignore[no-untyped-def]
    """A grant's audit target is "<email>/<dataset>": 64 characters were too few on
    PostgreSQL (a 500); now the longest email and dataset name the site accepts fit."""
    from tests.conftest import pings_tables

    owner, _ = inprocess_study_clients
    name = "D" * 100  # DATASET_NAME_MAX
    email = ("r" * 64) + "@" + ("h" * 60 + ".") * 3 + "example"  # a long, valid address
    real, mock = pings_tables(rows=50, mock_rows=20)
    owner.datasets.upload(name=name, assets={"pings": (real, mock)}, progress=False)
    owner.users.create(email=email, name="Dr. Long", role="researcher", password="long-pass-123")
    owner.budgets.grant(email, name, epsilon=1.0)
    event = owner.audit(action="budget_granted")[0]
    assert event["target_id"] == f"{email}/{name}"
