"""Schemathesis against the site's own OpenAPI schema: no input makes a server error.

The app runs in this process (ASGI, no sockets), with an owner's bearer token on every
call so the routes behind authentication are exercised too, and a dataset, a researcher
and a project so lookups can find something. The example count is bounded so the run
stays short; ``DATASITE_SCHEMATHESIS_EXAMPLES`` raises it for a longer local hunt.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from datasite.app import create_app  # noqa: E402
from datasite.config import Settings  # noqa: E402
from tests.conftest import pings_tables  # noqa: E402
from tests.server import OWNER_EMAIL, OWNER_PASSWORD  # noqa: E402

EXAMPLES = int(os.environ.get("DATASITE_SCHEMATHESIS_EXAMPLES", "8"))


def _site(folder: Path):  # type: ignore[no-untyped-def]
    app = create_app(
        Settings(data_dir=folder, owner_email=OWNER_EMAIL, owner_password=OWNER_PASSWORD)
    )
    client = TestClient(app)
    token = client.post(
        "/api/v1/auth/login", json={"email": OWNER_EMAIL, "password": OWNER_PASSWORD}
    ).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    real, mock = pings_tables(rows=40, mock_rows=10)
    uploads = []
    for frame in (real, mock):
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        answer = client.post("/api/v1/uploads", content=buffer.getvalue(), headers=headers)
        uploads.append(answer.json()["upload_id"])
    created = client.post(
        "/api/v1/datasets",
        headers=headers,
        json={
            "name": "Pings",
            "assets": [{"name": "pings", "real_upload": uploads[0], "mock_upload": uploads[1]}],
        },
    )
    assert created.status_code == 201, created.text
    client.post(
        "/api/v1/users",
        headers=headers,
        json={"email": "bob@uni.example", "name": "Bob", "password": "bob-password-123"},
    )
    return app, headers


_folder = Path(tempfile.mkdtemp(prefix="datasite-schemathesis-"))
APP, HEADERS = _site(_folder)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP).exclude(
    # Logging out would revoke the token every other case uses.
    path="/api/v1/auth/logout"
)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_input_makes_a_server_error(case) -> None:  # type: ignore[no-untyped-def]
    response = case.call(headers=HEADERS)
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} answered {response.status_code}: "
        f"{response.text[:500]}"
    )
