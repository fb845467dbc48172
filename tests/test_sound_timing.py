"""How long a run on the private data took is a channel: researchers never see it.

Code can make its run time depend on a private value (``time.sleep(secret)``); the
owner and reviewers still see durations and finish times, a researcher sees neither.
"""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from datasite.app import create_app
from datasite.config import Settings
from datasite.contract.job import JobResult, JobSpec
from datasite.contract.results import encode_result
from tests.test_sound_runs import (
    RECORDED_NOTHING,
    FakeExecutor,
    add_request,
    approve,
    wait_finished,
)

OWNER = ("owner@site.example", "owner-password-123")
RESEARCHER = ("res@uni.example", "res-password-123")
SECRET_SECONDS = 42.4242  # the private value the code "slept" for


def slow_release(spec: JobSpec) -> JobResult:
    manifest, blobs = encode_result(1.0)
    return JobResult(
        job_id=spec.job_id,
        ok=True,
        manifest=manifest,
        blobs=blobs,
        touched_data=True,
        duration_seconds=SECRET_SECONDS,
        harness_report=RECORDED_NOTHING,
    )


def test_researchers_never_see_how_long_a_run_took(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "site", owner_email=OWNER[0], owner_password=OWNER[1])
    with TestClient(create_app(settings)) as client:
        site = client.app.state.site
        site._executor = FakeExecutor(slow_release)
        request_id = add_request(site, runs=1)
        approve(site, request_id)
        wait_finished(site, request_id, 1)

        def headers(email: str, password: str) -> dict[str, str]:
            answer = client.post("/api/v1/auth/login", json={"email": email, "password": password})
            return {"Authorization": f"Bearer {answer.json()['token']}"}

        researcher, owner = headers(*RESEARCHER), headers(*OWNER)
        seen = client.get(f"/api/v1/requests/{request_id}", headers=researcher).json()
        (run,) = seen["runs"]
        assert run["state"] == "released"
        assert run["duration_seconds"] is None and run["finished_at"] is None
        assert seen["updated_at"] == run["started_at"]  # not the finish time
        result = client.get(f"/api/v1/requests/{request_id}/result", headers=researcher).json()
        assert result["run"]["duration_seconds"] is None and result["run"]["finished_at"] is None
        listed = client.get("/api/v1/requests", headers=researcher).json()
        assert str(SECRET_SECONDS) not in str(listed) + str(seen) + str(result)

        staff = client.get(f"/api/v1/requests/{request_id}", headers=owner).json()
        assert staff["runs"][0]["duration_seconds"] == SECRET_SECONDS
        assert staff["runs"][0]["finished_at"] is not None
