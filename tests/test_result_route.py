"""``GET /requests/{id}/result`` and the one-hop approval: what a notebook fetches and
what a reviewer's click returns, with the refusals a user can cause."""

from __future__ import annotations

import httpx
import pytest

import researcher_kit as rk
from datasite.client.http import DatasiteError
from tests.conftest import REVIEWER_EMAIL, REVIEWER_PASSWORD
from tests.flows import NOISY_COUNT, counting_calls, submit_source

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def study_clients(inprocess_study_clients):  # type: ignore[no-untyped-def]
    """In process: these rules need the site's routes and services, not a sandbox."""
    return inprocess_study_clients


PRINTS_AND_COUNTS = "def loud_count(df):\n    print('secret row', df.iloc[0].tolist())\n" + (
    NOISY_COUNT.replace("def noisy_count(df):\n", "")
)


def _spent(researcher) -> float:  # type: ignore[no-untyped-def]
    return next(b["spent_epsilon"] for b in researcher.budgets() if b["dataset"] == "Pings")


def test_a_result_is_one_small_read_once_the_run_is_over(study_clients) -> None:
    owner, researcher = study_clients
    request_id = submit_source(researcher.session, NOISY_COUNT, "noisy_count", epsilon=0.1)
    researcher.request(request_id).wait(until=("checked",))

    waiting = researcher.session.get(f"/requests/{request_id}/result")
    assert waiting == {"request_id": request_id, "state": "checked", "deny_reason": None,
                       "run": None}  # fmt: skip
    with pytest.raises(PermissionError, match="waiting for a reviewer's decision"):
        researcher.request(request_id).result()

    approved = owner.session.post(f"/requests/{request_id}/approve", json={})
    # The approval answers with the request as it left it: its first run claimed.
    assert approved["state"] == "running" and approved["runs_used"] == 1
    assert [run["state"] for run in approved["runs"]] == ["running"]

    value = researcher.request(request_id).result()
    assert isinstance(value, float) and value != 2000.0  # noised
    done = researcher.session.get(f"/requests/{request_id}/result")
    assert done["state"] == "released"
    assert done["run"]["id"] == approved["runs"][0]["id"]
    assert done["run"]["manifest"] is not None


def test_run_output_stays_with_the_owner(study_clients) -> None:
    owner, researcher = study_clients
    request_id = submit_source(researcher.session, PRINTS_AND_COUNTS, "loud_count", epsilon=0.1)
    researcher.request(request_id).wait(until=("checked",))
    owner.session.post(
        f"/requests/{request_id}/approve", json={"justification": "prints a row, reviewed"}
    )
    researcher.request(request_id).result()
    seen_by_researcher = researcher.session.get(f"/requests/{request_id}/result")["run"]
    seen_by_owner = owner.session.get(f"/requests/{request_id}/result")["run"]
    assert seen_by_researcher["stdout"] is None
    assert "secret row" in seen_by_owner["stdout"]
    reviewer = rk.login(researcher.session.url, REVIEWER_EMAIL, REVIEWER_PASSWORD)
    seen_by_reviewer = reviewer.session.get(f"/requests/{request_id}")["runs"][-1]
    assert seen_by_reviewer["stdout"] is None and seen_by_reviewer["error_detail"] is None


def test_refused_reads_and_approvals_say_why_and_change_nothing(study_clients) -> None:
    owner, researcher = study_clients
    request_id = submit_source(researcher.session, NOISY_COUNT, "noisy_count", epsilon=0.1)
    researcher.request(request_id).wait(until=("checked",))
    spent = _spent(researcher)
    url = f"{researcher.session.url}/api/v1/requests/{request_id}"

    anonymous = httpx.Client(transport=researcher.session.transport).get(f"{url}/result")
    assert anonymous.status_code == 401
    assert anonymous.json()["detail"] == "Log in first: this route needs a bearer token."
    forged = httpx.Client(transport=researcher.session.transport).get(
        f"{url}/result", headers={"Authorization": "Bearer not-a-token"}
    )
    assert forged.status_code == 401
    assert forged.json()["detail"] == "Your session token is not valid. Log in again."
    with pytest.raises(DatasiteError, match="no code request 999999 you can see"):
        researcher.session.get("/requests/999999/result")

    # Another researcher cannot see it, nor can a researcher approve anything.
    owner.users.create(
        email="eve@uni.example", name="Eve", role="researcher", password="eve-password-1"
    )
    eve = rk.login(researcher.session.url, "eve@uni.example", "eve-password-1")
    with pytest.raises(DatasiteError, match=f"no code request {request_id} you can see"):
        eve.session.get(f"/requests/{request_id}/result")
    with pytest.raises(DatasiteError) as refused:
        researcher.session.post(f"/requests/{request_id}/approve", json={})
    assert refused.value.status == 403
    assert str(refused.value).endswith(
        "Only owner or reviewer accounts may do this; you are a researcher."
    )
    with pytest.raises(DatasiteError, match="no code request 999999"):
        owner.session.post("/requests/999999/approve", json={})

    # None of it moved the request or the budget.
    assert researcher.session.get(f"/requests/{request_id}/result")["state"] == "checked"
    assert _spent(researcher) == spent

    # A reviewer approves it, once; a second approval is refused and charges nothing.
    reviewer = rk.login(researcher.session.url, REVIEWER_EMAIL, REVIEWER_PASSWORD)
    reviewer.session.post(f"/requests/{request_id}/approve", json={})
    with pytest.raises(DatasiteError) as again:
        owner.session.post(f"/requests/{request_id}/approve", json={})
    assert again.value.status == 409
    assert researcher.request(request_id).result() != 2000.0
    assert _spent(researcher) == pytest.approx(spent + 0.1)


def test_a_denied_request_reports_the_reason(study_clients) -> None:
    owner, researcher = study_clients
    request_id = submit_source(researcher.session, NOISY_COUNT, "noisy_count", epsilon=0.1)
    researcher.request(request_id).wait(until=("checked",))
    owner.session.post(f"/requests/{request_id}/deny", json={"reason": "Too broad."})
    with pytest.raises(PermissionError, match="was denied: Too broad."):
        researcher.request(request_id).result()
    assert researcher.session.get(f"/requests/{request_id}/result")["deny_reason"] == "Too broad."


def test_a_result_the_wait_brought_is_read_without_asking_again(study_clients) -> None:
    owner, researcher = study_clients
    request_id = submit_source(researcher.session, NOISY_COUNT, "noisy_count", epsilon=0.1)
    researcher.request(request_id).wait(until=("checked",))
    owner.session.post(f"/requests/{request_id}/approve", json={})
    finished = researcher.request(request_id).wait()
    assert finished.state == "released"

    with counting_calls(researcher.session) as calls:
        value = finished.result()
        assert calls == []  # released with no runs left: the wait's last answer is final
        # ... and it is the value the site gives a handle that knows nothing yet.
        assert rk.client.Request(researcher.session, {"id": request_id}).result() == value
        assert calls == [f"/api/v1/requests/{request_id}/result"]


def test_a_request_with_runs_left_asks_the_site_for_its_latest_run(study_clients) -> None:
    owner, researcher = study_clients
    request_id = submit_source(researcher.session, NOISY_COUNT, "noisy_count", epsilon=0.1, runs=2)
    researcher.request(request_id).wait(until=("checked",))
    owner.session.post(f"/requests/{request_id}/approve", json={})
    first = researcher.request(request_id).wait()
    first_value = first.result()

    # The second run replaces what ``first`` saw: its result comes from the site.
    researcher.request(request_id).run()
    second_value = researcher.request(request_id).result()
    with counting_calls(researcher.session) as calls:
        assert first.result() == second_value != first_value
    assert f"/api/v1/requests/{request_id}/result" in calls


def test_a_blind_runs_releaser_is_given_the_assets_public_columns(  # type: ignore[no-untyped-def]
    study_clients, inprocess_site, monkeypatch
) -> None:
    """The site's job names each input's public columns (the asset's, the mock's), so the
    releaser answers the schema without opening the real table (see test_blind_release)."""
    from sqlalchemy import select

    from datasite.db.models import Asset

    owner, researcher = study_clients
    specs = []
    submit = inprocess_site.executor.submit
    monkeypatch.setattr(inprocess_site.executor, "submit", lambda s: specs.append(s) or submit(s))
    source = (
        "from researcher_kit import dp\n"
        "def f(df):\n"
        "    return sorted(df.dtypes.items()), dp.count(df, epsilon=0.1)\n"
    )
    request_id = submit_source(researcher.session, source, "f", epsilon=0.1, kind="blind")
    researcher.request(request_id).wait(until=("checked",))
    owner.session.post(f"/requests/{request_id}/approve", json={})
    seen, _ = researcher.request(request_id).result()
    with inprocess_site.site.sessions() as db:
        columns = db.scalar(select(Asset.columns).where(Asset.name == "pings"))
    public = {c["name"]: c["dtype"] for c in columns}
    assert [spec.schemas for spec in specs] == [{"df": public}]
    assert [tuple(pair) for pair in seen] == sorted(public.items())
