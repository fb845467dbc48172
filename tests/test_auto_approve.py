"""Auto-approval: a Context request that passes, within budget, runs without a human;
everything else waits for one, and nothing is charged for a request left waiting."""

from __future__ import annotations

import pytest

from tests.conftest import RESEARCHER_EMAIL
from tests.flows import NOISY_COUNT, submit_source, wait_state

pytestmark = pytest.mark.integration

CONTEXT_COUNT = (
    "def count(ctx):\n    import polars as pl\n"
    "    return ctx.query().select(pl.len().dp.noise()).release().collect().item()\n"
)


@pytest.fixture(scope="module")
def clients(inprocess_study_clients):  # type: ignore[no-untyped-def]
    """In process: the rule is the reviewer's, the run an in-process releaser's."""
    owner, researcher = inprocess_study_clients
    owner.policies.set("Pings", auto_approve=True, max_epsilon_per_request=1.0)
    owner.budgets.grant(RESEARCHER_EMAIL, "Pings", epsilon=1.0)
    return owner, researcher


def submit_context(researcher, epsilon: float) -> int:  # type: ignore[no-untyped-def]
    return submit_source(
        researcher.session,
        CONTEXT_COUNT,
        "count",
        epsilon=epsilon,
        kind="context",
        bindings={"ctx": "pings"},
    )


def states_seen(researcher, request_id: int) -> list[str]:  # type: ignore[no-untyped-def]
    """Follow the request with long polls until it ends or waits for a person
    (``checked``: an auto-approved request never rests there)."""
    seen = [researcher.request(request_id).state]
    for _ in range(10):  # bounded: a stuck request fails the test instead of hanging it
        if seen[-1] in ("released", "failed", "denied", "checked"):
            break
        answer = researcher.session.get(
            f"/requests/{request_id}/next", params={"state": seen[-1], "timeout": 60}
        )
        if answer["state"] != seen[-1]:
            seen.append(answer["state"])
    return seen


def test_a_passing_context_request_runs_without_a_human(clients) -> None:
    owner, researcher = clients
    request_id = submit_context(researcher, epsilon=0.5)
    seen = states_seen(researcher, request_id)
    assert seen[-1] == "released" and "checked" not in seen, seen
    assert abs(researcher.request(request_id).result() - 2000) < 100  # 2,000 rows, noised
    actions = [e["action"] for e in owner.audit() if e["target_id"] == str(request_id)]
    assert "request_auto_approved" in actions and "request_approved" not in actions
    grant = next(g for g in owner.budgets.list() if g["email"] == RESEARCHER_EMAIL)
    assert grant["spent_epsilon"] == pytest.approx(0.5)


def test_a_context_request_over_the_budget_waits_for_a_human_uncharged(clients) -> None:
    owner, researcher = clients
    before = next(g for g in owner.budgets.list() if g["email"] == RESEARCHER_EMAIL)
    request_id = submit_context(researcher, epsilon=0.8)  # only 0.5 of 1.0 is left
    assert states_seen(researcher, request_id)[-1] == "checked"
    after = next(g for g in owner.budgets.list() if g["email"] == RESEARCHER_EMAIL)
    assert after["spent_epsilon"] == before["spent_epsilon"]
    assert owner.requests.get(request_id).policy_report.verdict == "pass"


def test_a_mechanism_request_always_waits_for_a_human(clients) -> None:
    _, researcher = clients
    request_id = submit_source(researcher.session, NOISY_COUNT, "noisy_count", epsilon=0.1)
    assert wait_state(researcher.session, request_id, ("checked",)).state == "checked"
    assert states_seen(researcher, request_id)[-1] == "checked"
