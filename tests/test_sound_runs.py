"""Runs keep what they must: a request's total output is capped over all its runs, the
charge of a run whose code ran stays, and stored error names are the fixed ones.

An in-process ``Site`` on SQLite with a stand-in executor: these are the rules of
``datasite.runs`` itself, not of the sandbox (see ``test_sound_errors`` for that).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest
from sqlalchemy import select

from datasite.config import Settings
from datasite.contract.job import JobResult, JobSpec
from datasite.contract.results import encode_result
from datasite.db.models import (
    Asset,
    CodeRequest,
    Dataset,
    LedgerEntry,
    Project,
    RequestRun,
    User,
)
from datasite.site import Site

MARKER = "987-65-4321"


class FakeExecutor:
    """Answers every job with what ``answer`` makes of its spec."""

    def __init__(self, answer: Callable[[JobSpec], JobResult]) -> None:
        self.answer = answer
        self.specs: list[JobSpec] = []

    def submit(self, spec: JobSpec) -> Future[JobResult]:
        self.specs.append(spec)
        future: Future[JobResult] = Future()
        future.set_result(self.answer(spec))
        return future

    def close(self) -> None:
        pass


def make_site(tmp: Path, **settings: object) -> Site:
    site = Site(
        Settings(
            data_dir=tmp / "site",
            owner_email="owner@site.example",
            owner_password="owner-password-123",
            **settings,
        )
    )
    return site


def add_request(site: Site, runs: int = 3, epsilon: float = 1.0) -> int:
    """A researcher, a dataset and one ``checked`` request with ``runs`` runs."""
    from datasite.auth.passwords import hash_password

    with site.sessions() as db:
        owner = db.scalar(select(User).where(User.role == "owner"))
        researcher = db.scalar(select(User).where(User.email == "res@uni.example"))
        if researcher is None:
            researcher = User(
                email="res@uni.example",
                name="R",
                role="researcher",
                password_hash=hash_password("res-password-123"),
            )
            db.add(researcher)
            db.flush()
        dataset = db.scalar(select(Dataset).where(Dataset.name == "D"))
        if dataset is None:
            dataset = Dataset(name="D", created_by=owner.id)
            db.add(dataset)
            db.flush()
            db.add(
                Asset(
                    dataset_id=dataset.id,
                    name="t",
                    real_rows=10,
                    mock_rows=10,
                    real_path="real.parquet",
                    mock_path="mock.parquet",
                )
            )
        project = Project(name="P", owner_id=researcher.id)
        db.add(project)
        db.flush()
        request = CodeRequest(
            project_id=project.id,
            author_id=researcher.id,
            dataset_id=dataset.id,
            entry="f",
            source="def f(t):\n    return 1\n",
            source_hash="x",
            kind="mechanism",
            bindings={},
            epsilon=epsilon,
            runs_allowed=runs,
            state="checked",
            policy_report={"verdict": "needs_review"},
        )
        db.add(request)
        db.commit()
        return request.id


def approve(site: Site, request_id: int) -> None:
    with site.sessions() as db:
        owner = db.scalar(select(User).where(User.role == "owner"))
    site.reviewer.approve(request_id, owner, None)


def wait_finished(site: Site, request_id: int, count: int) -> list[RequestRun]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with site.sessions() as db:
            runs = list(
                db.scalars(
                    select(RequestRun)
                    .where(RequestRun.request_id == request_id)
                    .order_by(RequestRun.id)
                )
            )
            if len(runs) >= count and all(r.state != "running" for r in runs):
                db.expunge_all()
                return runs
        time.sleep(0.05)
    raise AssertionError("runs did not finish")


def ledger_of(site: Site, request_id: int) -> list[tuple[str, float]]:
    with site.sessions() as db:
        entries = db.scalars(
            select(LedgerEntry).where(LedgerEntry.request_id == request_id).order_by(LedgerEntry.id)
        )
        return [(e.kind, e.epsilon) for e in entries]


@pytest.fixture
def sites(tmp_path: Path) -> Iterator[Callable[..., Site]]:
    made: list[Site] = []

    def make(answer: Callable[[JobSpec], JobResult], **settings: object) -> Site:
        site = make_site(tmp_path / str(len(made)), **settings)
        site._executor = FakeExecutor(answer)
        made.append(site)
        return site

    yield make
    for site in made:
        site.close()


#: What the real run's recording harness reports for a raw run that released nothing
#: (``policies.instrument.recording_call``); without it the site withholds the result.
RECORDED_NOTHING = {
    "recorded": True,
    "spend": {"epsilon": 0.0, "delta": 0.0, "groups": [], "diffprivlib": [], "contexts": []},
}


def released(spec: JobSpec, size: int = 1500) -> JobResult:
    manifest, blobs = encode_result(b"x" * size)
    return JobResult(job_id=spec.job_id, ok=True, manifest=manifest, blobs=blobs,
                     touched_data=True, harness_report=RECORDED_NOTHING)  # fmt: skip


def test_a_requests_stored_output_is_capped_over_all_its_runs(sites) -> None:  # type: ignore[no-untyped-def]
    site = sites(released, max_request_output_bytes=2500)
    request_id = add_request(site, runs=3)
    approve(site, request_id)
    (first,) = wait_finished(site, request_id, 1)
    assert first.state == "released"
    site.runner.start(request_id)
    first, second = wait_finished(site, request_id, 2)
    assert second.state == "failed" and second.error_type == "OutputTooLarge"
    assert "2500-byte" in second.error_message
    assert second.manifest is None
    assert not (site.settings.results_dir / str(second.id)).exists()
    # reserved 3 runs; the third (never run) is refunded, the second's charge stays
    assert ledger_of(site, request_id) == [("reserve", 3.0), ("refund", -1.0)]


def test_one_run_may_use_the_whole_request_cap(sites) -> None:  # type: ignore[no-untyped-def]
    site = sites(released, max_request_output_bytes=10_000)
    request_id = add_request(site, runs=2)
    approve(site, request_id)
    wait_finished(site, request_id, 1)
    site.runner.start(request_id)
    assert [r.state for r in wait_finished(site, request_id, 2)] == ["released", "released"]


def test_the_request_cap_is_a_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DATASITE_MAX_REQUEST_OUTPUT_BYTES", "12345")
    assert Settings.from_env(data_dir=tmp_path).max_request_output_bytes == 12345


def failed(touched: bool, error_type: str = "ValueError") -> Callable[[JobSpec], JobResult]:
    def answer(spec: JobSpec) -> JobResult:
        return JobResult(
            job_id=spec.job_id,
            ok=False,
            error_type=error_type,
            error_message="failed",
            error_detail=f"detail {MARKER}",
            touched_data=touched,
        )

    return answer


def test_a_run_whose_code_ran_keeps_its_charge(sites) -> None:  # type: ignore[no-untyped-def]
    site = sites(failed(touched=True))
    request_id = add_request(site, runs=2)
    approve(site, request_id)
    wait_finished(site, request_id, 1)
    assert ledger_of(site, request_id) == [("reserve", 2.0), ("refund", -1.0)]


def test_a_run_where_no_code_ran_is_refunded(sites) -> None:  # type: ignore[no-untyped-def]
    site = sites(failed(touched=False, error_type="SyntaxError"))
    request_id = add_request(site, runs=2)
    approve(site, request_id)
    wait_finished(site, request_id, 1)
    assert ledger_of(site, request_id) == [("reserve", 2.0), ("refund", -2.0)]


def test_stored_error_names_are_fixed_names_whatever_the_executor_says(sites) -> None:  # type: ignore[no-untyped-def]
    site = sites(failed(touched=True, error_type=f"Err_{MARKER}"))
    request_id = add_request(site, runs=1)
    approve(site, request_id)
    (run,) = wait_finished(site, request_id, 1)
    assert run.error_type == "Error" and MARKER not in run.error_message
    assert f"Err_{MARKER}" in run.error_detail  # the owner's view
