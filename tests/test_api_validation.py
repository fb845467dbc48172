"""Input the API refuses with a clear 4xx, and datasets an owner archives or deletes.

In-process (ASGI, no server process): these are checks of the routes' own rules.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from datasite.app import create_app
from datasite.config import Settings
from datasite.db.models import Asset, AuditEvent, Dataset, LedgerEntry, User
from tests.conftest import pings_tables
from tests.server import OWNER_EMAIL, OWNER_PASSWORD

BOB = ("bob@uni.example", "bob-password-123")
BIG = "99999999999999999999999"


class Api:
    def __init__(self, client: TestClient, token: str) -> None:
        self.client, self.headers = client, {"Authorization": f"Bearer {token}"}

    def __getattr__(self, method: str):  # type: ignore[no-untyped-def]
        def call(path: str, **kwargs):  # type: ignore[no-untyped-def]
            return self.client.request(
                method.upper(), f"/api/v1{path}", headers=self.headers, **kwargs
            )

        return call


def _login(client: TestClient, email: str, password: str) -> Api:
    answer = client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert answer.status_code == 200, answer.text
    return Api(client, answer.json()["token"])


@pytest.fixture
def apis(tmp_path: Path) -> Iterator[tuple[TestClient, Api, Api]]:
    app = create_app(
        Settings(data_dir=tmp_path, owner_email=OWNER_EMAIL, owner_password=OWNER_PASSWORD)
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        owner = _login(client, OWNER_EMAIL, OWNER_PASSWORD)
        created = owner.post("/users", json={"email": BOB[0], "name": "Bob", "password": BOB[1]})
        assert created.status_code == 201, created.text
        researcher = _login(client, *BOB)
        assert researcher.post("/projects", json={"name": "Study"}).status_code == 201
        yield client, owner, researcher


def upload(owner: Api, name: str) -> object:
    real, mock = pings_tables(rows=40, mock_rows=10)
    ids = []
    for frame in (real, mock):
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        ids.append(owner.post("/uploads", content=buffer.getvalue()).json()["upload_id"])
    return owner.post(
        "/datasets",
        json={
            "name": name,
            "assets": [{"name": "pings", "real_upload": ids[0], "mock_upload": ids[1]}],
        },
    )


def submit(researcher: Api, dataset: str):  # type: ignore[no-untyped-def]
    return researcher.post(
        "/requests",
        json={
            "project": "Study",
            "dataset": dataset,
            "entry": "f",
            "source": "def f(df):\n    return 1\n",
            "bindings": {"df": "pings"},
            "epsilon": 0.5,
        },
    )


# -- ids in paths -------------------------------------------------------------------------


def test_a_huge_id_is_a_clear_422_not_a_server_error(apis) -> None:
    client, owner, researcher = apis
    for api in (owner, researcher):
        for path in (
            f"/requests/{BIG}",
            f"/requests/{2**63}",
            f"/requests/{BIG}/result",
            f"/requests/1/runs/{BIG}/blobs/x",
            "/requests/0",
            "/requests/-3",
        ):
            answer = api.get(path)
            assert answer.status_code == 422, (path, answer.text)
            assert "request_id" in answer.json()["detail"] or "run_id" in answer.json()["detail"]
    answer = owner.post(f"/requests/{BIG}/approve", json={})
    assert answer.status_code == 422 and "9223372036854775807" in answer.json()["detail"]
    assert owner.get(f"/requests/{2**63 - 1}").status_code == 404  # the largest id: just absent


def test_a_huge_id_in_a_page_address_is_a_page_not_a_server_error(apis) -> None:
    client, owner, _ = apis
    client.cookies.set("datasite_session", owner.headers["Authorization"].split()[1])
    answer = client.get(f"/requests/{BIG}")
    assert answer.status_code in (404, 422), answer.text
    assert "too large" in answer.text


def test_every_integer_parameter_in_the_schema_is_bounded(apis) -> None:
    client, _, _ = apis
    schema = client.get("/openapi.json").json()
    checked = 0
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                kind = parameter.get("schema", {})
                if kind.get("type") != "integer":
                    continue
                checked += 1
                where = f"{method.upper()} {path} {parameter['name']}"
                assert kind.get("maximum", kind.get("exclusiveMaximum", 2**64)) <= 2**63 - 1, where
                assert kind.get("minimum", kind.get("exclusiveMinimum", -(2**64))) >= 0, where
    assert checked >= 10


# -- dataset names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["a/b", "../etc", "", " leading", "trailing ", "x" * 101, "a?b", "a#b", "a%2Fb"]
)
def test_bad_dataset_names_are_refused_at_upload(apis, name: str) -> None:
    _, owner, _ = apis
    answer = upload(owner, name)
    assert answer.status_code == 422, answer.text
    assert (
        "not a valid dataset name" in answer.json()["detail"] or "name" in answer.json()["detail"]
    )
    assert owner.get("/datasets").json() == []


@pytest.mark.parametrize(
    "name", ["Pings", "Breast cancer v1.2", "a-b_c.d", "Données 2024", "x" * 100]
)
def test_good_dataset_names_upload_and_read_back(apis, name: str) -> None:
    _, owner, researcher = apis
    assert upload(owner, name).status_code == 201
    for api in (owner, researcher):
        assert api.get(f"/datasets/{name}").json()["name"] == name


# -- archive and delete -------------------------------------------------------------------


def _audit(client: TestClient, action: str) -> list[AuditEvent]:
    with client.app.state.site.sessions() as db:
        return list(db.query(AuditEvent).filter(AuditEvent.action == action))


def test_an_unused_dataset_is_deleted_with_its_files(apis, tmp_path: Path) -> None:
    client, owner, researcher = apis
    assert upload(owner, "Scratch").status_code == 201
    grant = owner.put("/budgets", json={"email": BOB[0], "dataset": "Scratch", "epsilon": 1.0})
    assert grant.status_code == 200
    files = list((tmp_path / "assets").glob("*/*.parquet"))  # the mock, the real partitions
    assert len(files) == 2 and any(path.is_dir() for path in files)
    assert researcher.delete("/datasets/Scratch").status_code == 403
    answer = owner.delete("/datasets/Scratch")
    assert answer.status_code == 200, answer.text
    assert answer.json()["outcome"] == "deleted"
    assert owner.get("/datasets").json() == [] and owner.get("/budgets").json() == []
    assert not any(path.exists() for path in files)
    [event] = _audit(client, "dataset_deleted")
    assert event.target_id == "Scratch" and event.actor_email == OWNER_EMAIL
    assert owner.delete("/datasets/Scratch").status_code == 404


def test_a_used_dataset_is_archived_never_losing_its_ledger(apis) -> None:
    client, owner, researcher = apis
    assert upload(owner, "Pings").status_code == 201
    assert (
        owner.put(
            "/budgets", json={"email": BOB[0], "dataset": "Pings", "epsilon": 3.0}
        ).status_code
        == 200
    )
    assert submit(researcher, "Pings").status_code == 201
    with client.app.state.site.sessions() as db:
        ledger_before = db.query(LedgerEntry).count()

    answer = owner.delete("/datasets/Pings")
    assert answer.status_code == 200, answer.text
    assert answer.json()["outcome"] == "archived" and "ledger" in answer.json()["detail"]
    with client.app.state.site.sessions() as db:
        assert db.query(LedgerEntry).count() == ledger_before
        assert db.query(Asset).count() == 1
    assert [g["dataset"] for g in owner.get("/budgets").json()] == ["Pings"]
    assert [e.detail.get("instead_of") for e in _audit(client, "dataset_archived")] == ["delete"]

    # Hidden from the researcher, shown (as archived) to the owner.
    assert researcher.get("/datasets").json() == []
    assert researcher.get("/datasets/Pings").status_code == 404
    assert researcher.get("/datasets/Pings/assets/pings/mock").status_code == 404
    assert researcher.get("/datasets/Pings/policy").status_code == 404
    assert [d["archived"] for d in owner.get("/datasets").json()] == [True]
    # No new requests or budgets; the researcher's old request is still theirs to read.
    refused = submit(researcher, "Pings")
    assert refused.status_code == 409 and "archived" in refused.json()["detail"]
    assert len(researcher.get("/requests").json()) == 1
    again = owner.put("/budgets", json={"email": BOB[0], "dataset": "Pings", "epsilon": 5.0})
    assert again.status_code == 409

    restored = owner.post("/datasets/Pings/restore")
    assert restored.status_code == 200 and restored.json()["archived"] is False
    assert [d["name"] for d in researcher.get("/datasets").json()] == ["Pings"]
    assert len(_audit(client, "dataset_restored")) == 1
    assert owner.post("/datasets/Pings/archive").json()["archived"] is True
    assert owner.post("/datasets/Pings/archive").status_code == 200  # idempotent, one event
    assert len(_audit(client, "dataset_archived")) == 2


def test_a_dataset_named_with_a_slash_before_names_were_checked_can_be_removed(apis) -> None:
    client, owner, _ = apis
    with client.app.state.site.sessions() as db:
        owner_id = db.query(User.id).filter(User.role == "owner").scalar()
        db.add(Dataset(name="a/b", created_by=owner_id))
        db.commit()
    assert owner.post("/datasets/a%2Fb/archive").json()["archived"] is True
    answer = owner.delete("/datasets/a%2Fb")
    assert answer.status_code == 200 and answer.json()["outcome"] == "deleted", answer.text
    assert owner.get("/datasets").json() == []
