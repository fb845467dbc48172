"""``GET /requests/{id}/next``: a client waiting for a request hears of each change."""

from __future__ import annotations

import threading

import pytest

import researcher_kit.client as rkc
from datasite.client.http import DatasiteError
from tests.flows import NOISY_COUNT, counting_calls, submit_source

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def study_clients(inprocess_study_clients):  # type: ignore[no-untyped-def]
    """In process: these rules need the site's routes and services, not a sandbox."""
    return inprocess_study_clients


def test_a_waiting_client_follows_the_request_to_its_result(study_clients) -> None:
    owner, researcher = study_clients
    request_id = submit_source(researcher.session, NOISY_COUNT, "noisy_count", epsilon=0.1)
    seen = ["submitted"]
    while seen[-1] not in ("released", "failed", "denied"):
        if seen[-1] == "checked":
            # the owner decides while the researcher's long poll is hanging
            approval = threading.Timer(
                0.2, owner.session.post, (f"/requests/{request_id}/approve",), {"json": {}}
            )
            approval.start()
        answer = researcher.session.get(
            f"/requests/{request_id}/next", params={"state": seen[-1], "timeout": 30}
        )
        if answer["state"] != seen[-1]:
            seen.append(answer["state"])
    assert seen[0] == "submitted" and seen[-1] == "released"
    assert "checked" in seen and seen.index("checked") < len(seen) - 1
    assert researcher.request(request_id).result() != 2000.0  # noised


def test_an_unchanged_request_comes_back_as_it_is_after_the_timeout(study_clients) -> None:
    owner, researcher = study_clients
    request_id = submit_source(researcher.session, NOISY_COUNT, "noisy_count", epsilon=0.1)
    checked = researcher.request(request_id).wait(until=("checked",))
    owner.requests.get(request_id).deny(reason="Not needed.")
    answer = researcher.session.get(
        f"/requests/{request_id}/next", params={"state": "denied", "timeout": 0.2}
    )
    assert (checked.state, answer["state"], answer["deny_reason"]) == (
        "checked",
        "denied",
        "Not needed.",
    )


def test_bad_long_polls_get_clear_errors(study_clients) -> None:
    _, researcher = study_clients
    request_id = submit_source(researcher.session, NOISY_COUNT, "noisy_count", epsilon=0.1)
    with pytest.raises(DatasiteError, match="Unknown state 'finished'; states are submitted"):
        researcher.session.get(f"/requests/{request_id}/next", params={"state": "finished"})
    with pytest.raises(DatasiteError) as too_long:
        researcher.session.get(
            f"/requests/{request_id}/next", params={"state": "submitted", "timeout": 3600}
        )
    assert too_long.value.status == 422 and "timeout" in str(too_long.value)
    with pytest.raises(DatasiteError, match="no code request 999999 you can see"):
        researcher.session.get("/requests/999999/next", params={"state": "submitted"})
    # the request is unharmed by the refused calls
    assert researcher.request(request_id).state in ("submitted", "checked")


def test_a_handle_that_knows_its_state_waits_with_long_polls_only(study_clients) -> None:
    owner, researcher = study_clients
    request_id = submit_source(researcher.session, NOISY_COUNT, "noisy_count", epsilon=0.1)
    submitted = rkc.Request(researcher.session, {"id": request_id, "state": "submitted"})
    with counting_calls(researcher.session) as calls:
        assert submitted.wait(until=("checked",)).state == "checked"
    assert set(calls) == {f"/api/v1/requests/{request_id}/next"}

    # A handle whose state is out of date still hears the truth on its first call.
    owner.requests.get(request_id).deny(reason="Not needed.")
    stale = rkc.Request(researcher.session, {"id": request_id, "state": "submitted"})
    with counting_calls(researcher.session) as calls:
        assert stale.wait().state == "denied"
    assert calls == [f"/api/v1/requests/{request_id}/next"]
    # One whose state is already among those waited for is read again, not trusted.
    assert stale.wait(until=("denied",)).deny_reason == "Not needed."
    checked = rkc.Request(researcher.session, {"id": request_id, "state": "checked"})
    assert checked.wait(until=("checked", "denied")).state == "denied"
