"""Re-enabling a disabled account never brings its old tokens back."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from datasite.app import create_app
from datasite.config import Settings
from tests.test_sound_runs import add_request

OWNER = ("owner@site.example", "owner-password-123")
RESEARCHER = ("res@uni.example", "res-password-123")


def test_reenabling_an_account_does_not_revive_its_old_tokens(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "site", owner_email=OWNER[0], owner_password=OWNER[1])
    with TestClient(create_app(settings)) as client:
        add_request(client.app.state.site)  # creates the researcher account

        def login(email: str, password: str) -> dict[str, str]:
            answer = client.post("/api/v1/auth/login", json={"email": email, "password": password})
            assert answer.status_code == 200, answer.text
            return {"Authorization": f"Bearer {answer.json()['token']}"}

        def whoami(headers: dict[str, str]) -> int:
            return client.get("/api/v1/auth/me", headers=headers).status_code

        owner = login(*OWNER)
        old_api, old_other = login(*RESEARCHER), login(*RESEARCHER)
        assert whoami(old_api) == 200
        path = f"/api/v1/users/{RESEARCHER[0]}"
        assert client.patch(path, json={"disabled": True}, headers=owner).status_code == 200
        assert whoami(old_api) == 401
        assert client.patch(path, json={"disabled": False}, headers=owner).status_code == 200
        assert whoami(old_api) == 401 and whoami(old_other) == 401  # not revived
        assert whoami(login(*RESEARCHER)) == 200  # a new login works
        assert whoami(owner) == 200  # nobody else's tokens were touched
