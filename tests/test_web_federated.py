"""The request page shows a site's part of a federated plan as one request, with its rounds
and the budget of all of them (no browser: the in-process site's web routes)."""

from __future__ import annotations

import re

import pytest

from datasite.contract.federated_plan import plan_in_source, rounds_summary
from researcher_kit import federated
from tests.conftest import RESEARCHER_EMAIL, needs, setup_site
from tests.flows import approve_as_owner
from tests.server import OWNER_EMAIL, OWNER_PASSWORD

pytestmark = [needs("torch", "opacus"), pytest.mark.integration]

PLAN = federated.Plan(
    arch=[{"type": "linear", "in": 2, "out": 1}],
    features=["age", "online_hours"],
    label={"cmp": ">", "left": {"col": "online_hours"}, "right": {"lit": 2}},
    rounds=3, local_epochs=1, epsilon=1.5, delta=3e-6, sample_rate=0.1, lr=0.5,
    feature_bounds=[(18, 90), (0, 10)], on_dropout="stop",
)  # fmt: skip


def sign_in(client, email: str, password: str) -> None:  # type: ignore[no-untyped-def]
    form = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token is not None
    answer = client.post(
        "/login",
        data={"email": email, "password": password, "next": "/queue", "csrf_token": token[1]},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text[:500]


def test_a_federated_request_page_shows_its_rounds_and_their_budget(inprocess_site) -> None:
    owner, researcher, _, _ = setup_site(inprocess_site.url)
    owner.budgets.grant(RESEARCHER_EMAIL, "Pings", epsilon=5.0, delta=1e-4)
    asset = researcher.datasets["Pings"].assets["pings"]
    federation = federated.submit(PLAN, {"here": asset})
    request_id = federation.sites["here"].request.id
    approve_as_owner(owner.session, request_id)  # runs round 1
    federation.sites["here"].request.result(timeout=120)

    client = inprocess_site.client
    sign_in(client, OWNER_EMAIL, OWNER_PASSWORD)
    page = client.get(f"/requests/{request_id}").text
    assert 'id="federated-plan"' in page and "Federated plan: 3 rounds" in page
    rounds = page[
        page.index('id="federated-rounds"') : page.index(
            "</table>", page.index('id="federated-rounds"')
        )
    ]
    rows = re.findall(
        r'<tr><th scope="row">(\d)</th><td><span class="state state-([a-z-]+)">', rounds
    )
    assert rows == [("1", "released"), ("2", "not-started"), ("3", "not-started")]
    assert "1 of 3 started" in rounds
    # Every round at epsilon 0.5, and the total (reserved at approval) is the plan's 1.5.
    assert rounds.count('<td class="num">0.5</td>') == 3
    assert re.search(r'id="federated-epsilon-total">1\.5<', rounds)
    assert "reserves ε 1.5" in page and 'on_dropout="stop"' in page
    assert "linear" in page and "<code>online_hours</code>" in page
    assert 'id="federated-mismatch"' not in page
    # The queue lists the plan as one request, with all its rounds' runs.
    queue = client.get("/queue?state=all").text
    row = queue[queue.index(f'href="/requests/{request_id}"') :].split("</tr>")[0]
    assert queue.count(f'href="/requests/{request_id}"') == 1 and "× 3 runs" in row


def test_the_page_trusts_the_request_not_the_plan_literal() -> None:
    plan = plan_in_source(PLAN.source())
    assert plan is not None and plan["rounds"] == 3
    honest = rounds_summary(plan, runs=3, epsilon_per_run=0.5, delta_per_run=1e-6)
    assert honest["mismatch"] == [] and honest["epsilon_total"] == pytest.approx(1.5)
    # A literal that understates what the request reserves is shown, and flagged.
    padded = rounds_summary(plan, runs=6, epsilon_per_run=0.5, delta_per_run=1e-6)
    assert padded["rounds"] == 6 and padded["epsilon_total"] == pytest.approx(3.0)
    assert any("6 runs" in m for m in padded["mismatch"])
    assert any("reserves 3" in m for m in padded["mismatch"])
    assert plan_in_source("def f(df):\n    return 1\n") is None
    assert plan_in_source("FEDERATED_PLAN = __import__('os')\n") is None
