"""Bad input gets a clear 4xx error and changes nothing (in process; the upload limit and
the token lifetime on a real server process)."""

from __future__ import annotations

import time

import httpx
import pandas as pd
import pytest

import researcher_kit as rk
from datasite import admin
from datasite.client.embedded import EmbeddedSite
from datasite.client.http import ApiSession, DatasiteError
from tests.conftest import RESEARCHER_EMAIL, pings_tables, setup_site
from tests.server import OWNER_EMAIL, OWNER_PASSWORD

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def site(inprocess_site):  # type: ignore[no-untyped-def]
    owner, researcher, real, mock = setup_site(inprocess_site.url)
    researcher.create_project("Study")
    return inprocess_site, owner, researcher


def _audit_count(owner: admin.OwnerClient) -> int:
    return len(owner.audit(limit=5000))


def test_malformed_json_is_refused_with_a_readable_message(site) -> None:
    server, owner, _ = site
    response = httpx.Client(transport=server.transport).post(
        f"{server.url}/api/v1/users",
        content=b"{not json",
        headers={
            "Authorization": f"Bearer {owner.session.token}",
            "content-type": "application/json",
        },
    )
    assert response.status_code == 422
    assert "not valid JSON" in response.json()["detail"]
    assert len(owner.users.list()) == 3


def test_unknown_dataset_and_asset(site) -> None:
    _, owner, researcher = site
    with pytest.raises(KeyError, match="There is no dataset 'Nope'. Datasets: Pings"):
        researcher.datasets["Nope"]
    with pytest.raises(DatasiteError, match="has no asset 'nope'. Assets: pings") as caught:
        researcher.session.get("/datasets/Pings/assets/nope/mock")
    assert caught.value.status == 404
    body = {
        "project": "Study",
        "dataset": "Pings",
        "entry": "f",
        "source": "def f(df): pass",
        "bindings": {"df": "nope"},
        "epsilon": 1.0,
    }
    with pytest.raises(DatasiteError, match="no asset 'nope'"):
        researcher.session.post("/requests", json=body)
    assert researcher.requests == []


def test_duplicate_dataset_name_keeps_the_original(site) -> None:
    _, owner, _ = site
    real, mock = pings_tables(rows=50, mock_rows=10, seed=7)
    before = owner.datasets["Pings"]
    with pytest.raises(DatasiteError, match="A dataset named 'Pings' exists already") as caught:
        owner.datasets.upload(name="Pings", assets={"pings": (real, mock)}, progress=False)
    assert caught.value.status == 409
    assert owner.datasets["Pings"] == before


def test_schema_mismatch_names_the_columns_and_creates_nothing(site) -> None:
    _, owner, _ = site
    real, mock = pings_tables(rows=50, mock_rows=10)
    mock = mock.drop(columns=["gender"]).assign(age=mock["age"].astype(float), extra=1)
    with pytest.raises(DatasiteError) as caught:
        owner.datasets.upload(name="Broken", assets={"pings": (real, mock)}, progress=False)
    message = str(caught.value)
    assert caught.value.status == 422
    assert "column 'gender' is only in the real table" in message
    assert "column 'extra' is only in the mock table" in message
    assert "column 'age' is int64 in the real table but double in the mock" in message
    assert [d["name"] for d in owner.datasets.list()] == ["Pings"]


def test_not_parquet_upload_is_refused(site) -> None:
    _, owner, _ = site
    with pytest.raises(DatasiteError, match="not a readable Parquet file"):
        owner.session.post("/uploads", content=b"id,age\n1,2\n")


def test_wrong_password_and_unknown_email_look_the_same(site) -> None:
    server, owner, _ = site
    failures_before = len(owner.audit(action="login_failed"))
    messages = []
    for email, password in ((OWNER_EMAIL, "wrong-password"), ("nobody@x.example", "whatever1")):
        response = httpx.Client(transport=server.transport).post(
            f"{server.url}/api/v1/auth/login", json={"email": email, "password": password}
        )
        assert response.status_code == 401
        messages.append(response.json()["detail"])
    assert messages == ["Wrong email or password."] * 2
    assert len(owner.audit(action="login_failed")) == failures_before + 2


def test_researcher_cannot_call_owner_routes(site) -> None:
    _, owner, researcher = site
    count = _audit_count(owner)
    for method, path, body in (
        ("POST", "/users", {"email": "eve@x.example", "name": "Eve", "role": "owner"}),
        ("PUT", "/budgets", {"email": RESEARCHER_EMAIL, "dataset": "Pings", "epsilon": 99}),
        ("GET", "/audit", None),
        ("PATCH", f"/users/{OWNER_EMAIL}", {"disabled": True}),
        ("POST", "/requests/1/approve", {}),
    ):
        with pytest.raises(DatasiteError, match="you are a researcher") as caught:
            researcher.session.request(method, path, json=body)
        assert caught.value.status == 403
    assert "eve@x.example" not in {u["email"] for u in owner.users.list()}
    assert _audit_count(owner) == count
    assert all(b["epsilon"] != 99 for b in owner.budgets.list())


def test_audit_log_cannot_be_changed_through_the_api(site) -> None:
    server, owner, _ = site
    count = _audit_count(owner)
    headers = {"Authorization": f"Bearer {owner.session.token}"}
    for method in ("PUT", "PATCH", "DELETE"):
        response = httpx.Client(transport=server.transport).request(
            method, f"{server.url}/api/v1/audit", headers=headers
        )
        assert response.status_code == 405
    assert _audit_count(owner) == count


def test_disabled_account_cannot_log_in_or_use_its_token(site) -> None:
    server, owner, _ = site
    owner.users.create(email="carol@uni.example", name="Carol", password="carol-password-1")
    carol = rk.login(server.url, "carol@uni.example", "carol-password-1")
    owner.users.disable("carol@uni.example")
    with pytest.raises(DatasiteError, match="disabled"):
        carol.datasets.list()
    with pytest.raises(DatasiteError, match="Wrong email or password"):
        rk.login(server.url, "carol@uni.example", "carol-password-1")


def test_approving_a_denied_request_is_refused_and_changes_nothing(site) -> None:
    _, owner, researcher = site
    body = {
        "project": "Study",
        "dataset": "Pings",
        "entry": "f",
        "source": "def f(df):\n    return float(df['age'].mean())\n",
        "bindings": {"df": "pings"},
        "epsilon": 0.5,
    }
    request_id = researcher.session.post("/requests", json=body)["id"]
    rk.client.Request(researcher.session, {"id": request_id}).wait(until=("checked",))
    owner.requests.get(request_id).deny("raw mean")
    budgets_before = owner.budgets.list()
    with pytest.raises(DatasiteError, match="This request is denied; it cannot become approved"):
        owner.requests.get(request_id).approve(justification="please")
    after = owner.requests.get(request_id)
    assert (after.state, after.deny_reason) == ("denied", "raw mean")
    assert owner.budgets.list() == budgets_before
    assert not [e for e in owner.budgets.ledger() if e["request_id"] == request_id]


def test_invalid_request_fields_are_named(site) -> None:
    _, _, researcher = site
    body = {
        "project": "Study",
        "dataset": "Pings",
        "entry": "not a name",
        "source": "x",
        "bindings": {"df": "pings"},
        "epsilon": -1,
    }
    with pytest.raises(DatasiteError) as caught:
        researcher.session.post("/requests", json=body)
    assert caught.value.status == 422
    assert "entry: 'not a name' is not a Python function name" in str(caught.value)
    assert "epsilon: Input should be greater than 0" in str(caught.value)
    assert researcher.requests == [] or all(r.entry != "not a name" for r in researcher.requests)


def test_oversized_upload_and_expired_token(tmp_path) -> None:
    env = {
        "DATASITE_MAX_UPLOAD_BYTES": "20000",
        "DATASITE_TOKEN_TTL_SECONDS": "2",
        "DATASITE_NO_PROGRESS": "1",
    }
    with EmbeddedSite(
        tmp_path / "site", owner_email=OWNER_EMAIL, owner_password=OWNER_PASSWORD, env=env
    ) as server:
        owner = admin.connect(server.url, OWNER_EMAIL, OWNER_PASSWORD)
        big = pd.DataFrame({"x": range(50_000)})
        with pytest.raises(DatasiteError, match="larger than this site's limit of 20,000") as c:
            owner.datasets.upload(name="Big", assets={"t": (big, big.head(5))}, progress=False)
        assert c.value.status == 413
        assert owner.datasets.list() == []
        assert not any((tmp_path / "site" / "uploads").iterdir())
        time.sleep(2.5)
        with pytest.raises(DatasiteError, match="Your session has expired. Log in again."):
            owner.datasets.list()
        session = ApiSession.login(server.url, OWNER_EMAIL, OWNER_PASSWORD)
        assert session.get("/datasets") == []
        # streamed body without a length header is cut off at the limit too
        response = httpx.post(
            f"{server.url}/api/v1/uploads",
            content=iter([b"x" * 15000, b"y" * 15000]),
            headers={"Authorization": f"Bearer {session.token}"},
        )
        assert response.status_code == 413
        assert not any((tmp_path / "site" / "uploads").iterdir())
