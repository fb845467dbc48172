"""A pre-check runs user code: it must not hold the database's write lock meanwhile.

On SQLite every transaction takes the single write lock (``BEGIN IMMEDIATE``); a
pre-check that kept its transaction open while the checker dry-ran the code blocked every
other user's login for as long as the code chose to run.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from datasite.app import create_app
from datasite.config import Settings
from datasite.errors import NotFound
from tests.test_sound_runs import add_request


def test_a_login_succeeds_while_a_slow_precheck_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import policies.checker

    started, release = threading.Event(), threading.Event()

    def slow_check(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        started.set()
        release.wait(20)  # user code that takes its time
        raise NotFound("stand-in checker done")

    monkeypatch.setattr(policies.checker, "check_request", slow_check)
    settings = Settings(
        data_dir=tmp_path / "site",
        owner_email="owner@site.example",
        owner_password="owner-password-123",
    )
    with TestClient(create_app(settings)) as client:
        add_request(client.app.state.site)  # a researcher and dataset D with asset t

        def login(email: str, password: str) -> str:
            answer = client.post("/api/v1/auth/login", json={"email": email, "password": password})
            assert answer.status_code == 200, answer.text
            return answer.json()["token"]

        token = login("res@uni.example", "res-password-123")
        body = {
            "project": "P",
            "dataset": "D",
            "entry": "f",
            "source": "def f(t):\n    return 1\n",
            "bindings": {"t": "t"},
            "epsilon": 1.0,
        }
        answers: list[int] = []
        precheck = threading.Thread(
            target=lambda: answers.append(
                client.post(
                    "/api/v1/precheck",
                    json=body,
                    headers={"Authorization": f"Bearer {token}"},
                ).status_code
            )
        )
        precheck.start()
        try:
            assert started.wait(20), "the pre-check never reached the checker"
            began = time.monotonic()
            login("owner@site.example", "owner-password-123")  # a write: token + audit
            took = time.monotonic() - began
            assert not release.is_set()
        finally:
            release.set()
            precheck.join(30)
        assert took < 5, f"the login waited {took:.1f} s for the pre-check's lock"
        assert answers == [404]  # the stand-in checker's NotFound, as the route maps it
