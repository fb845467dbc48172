"""Stopping ``datasite serve`` with runs in flight: Ctrl-C, a short grace, ``kill -9``.

Real server processes, stopped the way people stop them (SIGINT to the process group, as
a terminal's Ctrl-C does; SIGKILL), and restarted on the same folder. The refund rule
these tests hold the site to is the README's ("Stopping a site with runs in flight"):

- a run that finishes within ``shutdown_grace_seconds`` is recorded as usual;
- one still running then is cancelled, failed ``Cancelled``: refunded when it had read
  no private data (a data-blind run whose releaser released nothing), charged otherwise;
- a run cut off by ``kill -9`` is failed ``Interrupted`` at the restart, its charge kept
  once and the request's unused runs refunded once, its duration unknown.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import httpx
import psutil
import pytest

from datasite import admin
from datasite.client.embedded import EmbeddedSite
from tests.conftest import RESEARCHER_EMAIL, setup_site
from tests.flows import approve_as_owner, submit_source
from tests.server import OWNER_EMAIL, OWNER_PASSWORD

pytestmark = [pytest.mark.integration, pytest.mark.one_database]

#: Sleeps on the real table (2,000 rows) only, so the checker's dry-run on the 200-row
#: mock is quick.
SLOW_RAW = (
    "def slow(df):\n    import time\n    if len(df) > 1000:\n"
    "        time.sleep({seconds})\n    return int(len(df))\n"
)
#: Data-blind: one DP count, then a sleep on the real table (the count tells them apart).
SLOW_BLIND_RELEASED = (
    "from researcher_kit import dp\n"
    "def counted(df):\n    import time\n    n = dp.count(df, epsilon=0.25)\n"
    "    if n > 1000:\n        time.sleep(120)\n    return n\n"
)
#: Data-blind and never asks for a release: it reads nothing.
SLOW_BLIND_NOTHING = (
    "def idle(df):\n    import time\n    for _ in range(1200):\n        time.sleep(0.1)\n"
    "    return 1\n"
)


def start(tmp_path: Path, **env: str) -> EmbeddedSite:
    return EmbeddedSite(
        tmp_path / "site",
        owner_email=OWNER_EMAIL,
        owner_password=OWNER_PASSWORD,
        env={"DATASITE_NO_PROGRESS": "1", "DATASITE_RUN_WALL_SECONDS": "300", **env},
    ).start()


def ctrl_c(server: EmbeddedSite, timeout: float = 120) -> str:
    """SIGINT to the server's process group, as a terminal's Ctrl-C; its console after."""
    assert server.process is not None
    os.killpg(server.process.pid, signal.SIGINT)
    server.process.wait(timeout)
    server.process = None
    return server.log()


def runs_in_sandbox(server: EmbeddedSite, count: int, timeout: float = 120) -> list[psutil.Process]:
    """Wait until ``count`` sandbox workers have a job's processes under them; returns
    the workers and every process under them."""
    assert server.process is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = [
            p
            for p in psutil.Process(server.process.pid).children()
            if "datasite.execution.worker" in " ".join(p.cmdline())
        ]
        if sum(1 for w in workers if w.children()) >= count:
            return [p for w in workers for p in (w, *w.children(recursive=True))]
        time.sleep(0.2)
    raise AssertionError(f"{count} run(s) did not reach the sandbox:\n{server.log()[-3000:]}")


def spent(owner) -> float:  # type: ignore[no-untyped-def]
    return next(g for g in owner.budgets.list() if g["email"] == RESEARCHER_EMAIL)["spent_epsilon"]


def ledger_total(owner) -> float:  # type: ignore[no-untyped-def]
    return sum(e["epsilon"] for e in owner.session.get("/ledger"))


def test_ctrl_c_waits_for_the_run_in_flight_and_keeps_its_result(tmp_path: Path) -> None:
    server = start(tmp_path, DATASITE_SHUTDOWN_GRACE_SECONDS="90")
    try:
        owner, researcher, _, _ = setup_site(server.url)
        researcher.create_project("Study")
        request_id = submit_source(
            researcher.session, SLOW_RAW.format(seconds=4), "slow", epsilon=0.5
        )
        approve_as_owner(owner.session, request_id)
        runs_in_sandbox(server, 1)
        log = ctrl_c(server)
        assert "stopping: waiting up to 90 s for 1 run(s) in flight" in log, log
        assert f"request {request_id} run 1 (running for" in log, log
        assert f"request {request_id} run 1 recorded: released" in log, log
        assert "cannot schedule new futures" not in log and "Traceback" not in log, log
        assert log.index("stopping: waiting") < log.index("recorded: released")

        server.start()
        owner = admin.connect(server.url, OWNER_EMAIL, OWNER_PASSWORD)
        request = owner.requests.get(request_id)
        assert request.state == "released", request.runs
        assert request.runs[-1]["manifest"]["root"]["value"] == 2000  # the real table
        assert request.runs[-1]["duration_seconds"] >= 4
        assert spent(owner) == pytest.approx(0.5) == ledger_total(owner)
    finally:
        server.stop()


def test_runs_still_going_after_the_grace_are_cancelled_and_refunded_by_the_rule(
    tmp_path: Path,
) -> None:
    server = start(tmp_path, DATASITE_SHUTDOWN_GRACE_SECONDS="2")
    try:
        owner, researcher, _, _ = setup_site(server.url)
        researcher.create_project("Study")
        owner.budgets.grant(RESEARCHER_EMAIL, "Pings", epsilon=5.0)
        released = submit_source(
            researcher.session, SLOW_BLIND_RELEASED, "counted", epsilon=0.25, kind="blind"
        )
        nothing = submit_source(
            researcher.session, SLOW_BLIND_NOTHING, "idle", epsilon=0.5, kind="blind", runs=2
        )
        for request_id in (released, nothing):
            approve_as_owner(owner.session, request_id)
        before = spent(owner)
        assert before == pytest.approx(0.25 + 2 * 0.5)  # both reserved
        runs_in_sandbox(server, 2)
        time.sleep(3)  # the count is released well within this
        started = time.monotonic()
        log = ctrl_c(server)
        assert time.monotonic() - started < 60, log  # 2 s of grace, then a prompt cancel
        assert "stopping: waiting up to 2 s for 2 run(s) in flight" in log, log
        assert "stopping: cancelling 2 run(s) still in flight after 2 s" in log, log
        assert re.search(
            rf"request {released} run \d+ recorded: failed \(Cancelled; budget kept", log
        )
        assert re.search(
            rf"request {nothing} run \d+ recorded: failed \(Cancelled; budget refunded", log
        )
        assert "cannot schedule new futures" not in log and "Traceback" not in log, log

        server.start()
        owner = admin.connect(server.url, OWNER_EMAIL, OWNER_PASSWORD)
        for request_id, note in ((released, "stays spent"), (nothing, "was refunded")):
            request = owner.requests.get(request_id)
            run = request.runs[-1]
            assert request.state == "failed" and run["error_type"] == "Cancelled", run
            assert "cancelled before it finished" in run["error_message"], run
            assert note in run["error_message"], run
            assert run["duration_seconds"] > 2, run  # how long it really ran
        # The count's release is charged; the idle request gets back both its runs.
        assert spent(owner) == pytest.approx(0.25) == pytest.approx(ledger_total(owner))
        assert "Interrupted" not in server.log()  # nothing left for the restart to fail
    finally:
        server.stop()


def test_kill_9_mid_run_fails_it_at_restart_without_a_double_charge(tmp_path: Path) -> None:
    server = start(tmp_path)
    try:
        owner, researcher, _, _ = setup_site(server.url)
        researcher.create_project("Study")
        request_id = submit_source(
            researcher.session, SLOW_RAW.format(seconds=300), "slow", epsilon=0.5, runs=2
        )
        approve_as_owner(owner.session, request_id)
        assert spent(owner) == pytest.approx(1.0)  # two runs reserved
        sandbox = runs_in_sandbox(server, 1)
        server.kill()
        # The workers notice their site is gone: the run on the private data is stopped
        # at once, not left to sleep out its 300 s with no one to take its result.
        _, left = psutil.wait_procs(sandbox, timeout=30)
        assert not left, [(p.pid, p.status()) for p in left]

        server.start()
        assert f"request {request_id} run 1 was in flight when the datasite stopped" in (
            server.log()
        )
        owner = admin.connect(server.url, OWNER_EMAIL, OWNER_PASSWORD)
        request = owner.requests.get(request_id)
        run = request.runs[-1]
        assert request.state == "failed" and run["error_type"] == "Interrupted", run
        assert "budget stays spent" in run["error_message"], run
        assert run["duration_seconds"] is None, run  # unknown, not a made-up 0.0
        cookie = {"datasite_session": owner.session.token}
        page = httpx.get(f"{server.url}/requests/{request_id}", cookies=cookie).text
        assert "how long it ran is unknown" in page and "(0 s)" not in page
        # The interrupted run keeps its charge; the run it will never make is refunded.
        assert spent(owner) == pytest.approx(0.5) == pytest.approx(ledger_total(owner))
        entries = owner.session.get("/ledger")

        server.restart()  # a second restart changes nothing
        owner = admin.connect(server.url, OWNER_EMAIL, OWNER_PASSWORD)
        assert owner.session.get("/ledger") == entries
        assert spent(owner) == pytest.approx(0.5)
    finally:
        server.stop()
