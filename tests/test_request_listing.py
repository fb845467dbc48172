"""``GET /requests`` and ``GET /requests/{id}``: the reviewer's queue, a researcher's own list
with its filters, and who may read one request."""

from __future__ import annotations

import httpx
import pytest

import researcher_kit as rk
from datasite.client.http import DatasiteError
from tests.conftest import pings_tables
from tests.flows import NOISY_COUNT, submit_source

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def study_clients(inprocess_study_clients):  # type: ignore[no-untyped-def]
    """In process: these rules need the site's routes and services, not a sandbox."""
    return inprocess_study_clients


def test_each_caller_lists_what_they_may_see_by_state_and_dataset(study_clients) -> None:
    owner, bob = study_clients
    real, mock = pings_tables()
    owner.datasets.upload(name="Visits", assets={"pings": (real, mock)}, progress=False)
    owner.users.create(
        email="carol@uni.example", name="Carol", role="researcher", password="carol-password-1"
    )
    carol = rk.login(bob.session.url, "carol@uni.example", "carol-password-1")
    carol.create_project("Study")
    mine = submit_source(bob.session, NOISY_COUNT, "noisy_count", epsilon=0.1)
    theirs = submit_source(carol.session, NOISY_COUNT, "noisy_count", epsilon=0.1)
    elsewhere = submit_source(
        carol.session, NOISY_COUNT, "noisy_count", epsilon=0.1, dataset="Visits"
    )
    for request_id in (mine, theirs, elsewhere):
        rk.client.Request(owner.session, {"id": request_id}).wait(until=("checked",))
    owner.requests.get(theirs).deny(reason="Not this one.")

    def ids(requests) -> list[int]:  # type: ignore[no-untyped-def]
        return [r["id"] for r in requests if r["id"] in (mine, theirs, elsewhere)]

    # Staff see everyone's, oldest first; the queue is what waits for a decision.
    assert ids(owner.session.get("/requests")) == [mine, theirs, elsewhere]
    assert [r.id for r in owner.requests.pending() if r.id in (mine, theirs, elsewhere)] == [
        mine,
        elsewhere,
    ]
    assert ids(owner.session.get("/requests", params={"dataset": "Visits"})) == [elsewhere]
    queue_on_pings = {"state": "checked", "dataset": "Pings"}
    assert ids(owner.session.get("/requests", params=queue_on_pings)) == [mine]
    # A researcher sees only their own, whatever the filters ask for.
    assert ids(bob.session.get("/requests")) == [mine]
    assert ids(carol.session.get("/requests", params={"state": "denied"})) == [theirs]
    assert ids(carol.session.get("/requests", params={"dataset": "Pings"})) == [theirs]
    assert [r.id for r in bob.requests if r.id in (mine, theirs, elsewhere)] == [mine]


def test_a_listing_filter_that_is_too_long_is_refused(study_clients) -> None:
    owner, _ = study_clients
    with pytest.raises(DatasiteError) as refused:
        owner.session.get("/requests", params={"state": "x" * 21})
    assert refused.value.status == 422
    assert "at most 20 characters" in str(refused.value)


def test_one_request_is_read_only_by_its_author_and_staff(study_clients) -> None:
    owner, bob = study_clients
    request_id = submit_source(bob.session, NOISY_COUNT, "noisy_count", epsilon=0.1)
    assert bob.request(request_id).data["author"] == "bob@uni.example"
    assert owner.requests.get(request_id).id == request_id
    owner.users.create(
        email="dave@uni.example", name="Dave", role="researcher", password="dave-password-1"
    )
    dave = rk.login(bob.session.url, "dave@uni.example", "dave-password-1")
    with pytest.raises(DatasiteError) as hidden:
        dave.request(request_id)
    assert hidden.value.status == 404
    assert str(hidden.value) == f"There is no code request {request_id} you can see."
    anonymous = httpx.Client(transport=bob.session.transport).get(
        f"{bob.session.url}/api/v1/requests/{request_id}"
    )
    assert anonymous.status_code == 401
    assert anonymous.json()["detail"] == "Log in first: this route needs a bearer token."
