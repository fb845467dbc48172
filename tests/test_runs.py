"""Approved code runs in the sandbox on the private data (real server process).

Hostile code gets nothing out and leaves the server serving; a run cut off by a crash is
failed after the restart and keeps its charge. The suite runs twice: on the default
local executor, and with the server sending its jobs to a real Dask cluster
(``LocalCluster`` with a worker process) where the sandbox applies on the worker.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import psutil
import pytest

import researcher_kit.client as rkc
from datasite import admin
from datasite.client.embedded import EmbeddedSite
from datasite.execution.sandbox import JOB_UIDS
from tests.conftest import RESEARCHER_EMAIL, RESEARCHER_PASSWORD, setup_site
from tests.flows import NOISY_COUNT, approve_as_owner, submit_source, wait_state
from tests.server import OWNER_EMAIL, OWNER_PASSWORD, create_pg_database, use_postgres

pytestmark = pytest.mark.integration

TUTORIAL_STYLE = """
def forecast(df):
    import numpy as np
    import opendp.prelude as dp
    from sklearn.ensemble import RandomForestRegressor
    from skops.io import dumps

    dp.enable_features("contrib")
    space = dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float)
    laplace = dp.m.make_laplace(*space, scale=1.0 / 0.5)
    noisy_mean_age = laplace(float(df["age"].clip(18, 90).mean()))
    X = df[["age"]].to_numpy(dtype=float)
    y = df["online_hours"].to_numpy()
    model = RandomForestRegressor(n_estimators=10, random_state=0).fit(X, y)
    return noisy_mean_age, dumps(model), model
"""

HOSTILE = {
    "read_passwd": "def attack(df):\n    return open('/etc/passwd').read()\n",
    "socket": (
        "def attack(df):\n    import socket\n    s = socket.create_connection(("
        "'127.0.0.1', {port}), timeout=3)\n    return 'connected'\n"
    ),
    "fork_bomb": (
        "def attack(df):\n    import os\n    while True:\n        try:\n"
        "            os.fork()\n        except OSError:\n            pass\n"
    ),
    "allocate_50gb": (
        "def attack(df):\n    block = bytearray(50 * 1024**3)\n    return len(block)\n"
    ),
    "loop_forever": "def attack(df):\n    while True:\n        pass\n",
}


def _sandboxed_processes(wait: float = 20.0) -> list[str]:
    """Live processes started by this test (the server, the Dask workers and everything
    under them) that run as the sandbox's unprivileged user."""
    deadline = time.monotonic() + wait
    while True:
        found = [
            " ".join(p.cmdline()) or p.name()
            for p in psutil.Process().children(recursive=True)
            if p.uids().real in JOB_UIDS and p.status() != psutil.STATUS_ZOMBIE
        ]
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


@contextmanager
def executor_env(kind: str) -> Iterator[dict[str, str]]:
    """The server's environment for ``kind``; for Dask, a live cluster to send jobs to."""
    if kind == "local":
        yield {}
        return
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=1, processes=True, threads_per_worker=2, dashboard_address=None
    ) as cluster:
        yield {
            "DATASITE_EXECUTOR": "dask",
            "DATASITE_SCHEDULER": cluster.scheduler_address,
            "DATASITE_DASK_ALLOW_INSECURE": "1",  # a plain-TCP test cluster (TLS: test_sound_dask)
        }


@pytest.fixture(scope="module", params=["local", "dask"])
def site(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    data = tmp_path_factory.mktemp(f"runs-{request.param}")
    env = {
        # the hostile runs end at these (the tutorial-style run needs about 1 s of CPU)
        "DATASITE_RUN_CPU_SECONDS": "5",
        "DATASITE_RUN_WALL_SECONDS": "10",
        "DATASITE_RUN_MEMORY_BYTES": str(2 * 1024**3),
        "DATASITE_NO_PROGRESS": "1",
    }
    url = create_pg_database() if use_postgres() else None
    with (
        executor_env(request.param) as executor,
        EmbeddedSite(
            data / "site",
            database_url=url,
            owner_email=OWNER_EMAIL,
            owner_password=OWNER_PASSWORD,
            env={**env, **executor},
        ) as server,
    ):
        owner, researcher, real, _ = setup_site(server.url)
        researcher.create_project("Study")
        owner.budgets.grant(RESEARCHER_EMAIL, "Pings", epsilon=50.0)
        # the hostile code's dry run ends at this limit (the default, 20 s, only waits longer)
        audit = {**owner.policies.get("Pings")["audit"], "dry_run_timeout_seconds": 6.0}
        owner.policies.set("Pings", audit=audit)
        yield server, owner, researcher, real, executor.get("DATASITE_SCHEDULER")


def test_tutorial_style_request_returns_noised_number_and_working_model(site) -> None:
    _, owner, researcher, real, _ = site
    request_id = submit_source(
        researcher.session, TUTORIAL_STYLE, "forecast", epsilon=0.5, mechanisms=["make_laplace"]
    )
    approve_as_owner(owner.session, request_id)
    noisy, model_bytes, model = researcher.request(request_id).result(timeout=180)
    true_mean = float(real["age"].clip(18, 90).mean())
    assert isinstance(noisy, float)
    assert noisy != true_mean  # noise was added ...
    assert abs(noisy - true_mean) < 40  # ... at scale 2, not an unrelated number
    assert isinstance(model_bytes, bytes)
    from datasite.contract.results import load_model

    for estimator in (load_model(model_bytes), model):
        prediction = estimator.predict(np.array([[40.0], [70.0]]))
        assert prediction.shape == (2,) and np.isfinite(prediction).all()
    run = owner.requests.get(request_id).runs[-1]
    assert run["state"] == "released"


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_code_gets_nothing_out_and_the_server_keeps_serving(site, name) -> None:
    server, owner, researcher, _, _ = site
    source = HOSTILE[name].format(port=server.port)
    request_id = submit_source(researcher.session, source, "attack", epsilon=0.1)
    approve_as_owner(owner.session, request_id)
    request = wait_state(researcher.session, request_id, ("released", "failed"))
    assert request.state == "failed", request.runs
    run = request.runs[-1]
    assert run["manifest"] is None
    assert run["error_type"]
    assert run["stdout"] is None and run["error_detail"] is None  # owner-only detail
    with pytest.raises(RuntimeError, match="The run failed"):
        request.result()
    # the server still answers, and the sandbox left no process behind
    assert researcher.datasets["Pings"].name == "Pings"
    assert _sandboxed_processes() == []
    # one reservation, no refund: the run touched the private data
    entries = [e for e in owner.budgets.ledger() if e["request_id"] == request_id]
    assert [e["kind"] for e in entries] == ["reserve"]


def test_request_with_several_runs_charges_each_and_stops_at_the_limit(site) -> None:
    _, owner, researcher, _, _ = site
    grant_before = next(g for g in owner.budgets.list() if g["email"] == RESEARCHER_EMAIL)
    request_id = submit_source(researcher.session, NOISY_COUNT, "noisy_count", epsilon=0.1, runs=2)
    approve_as_owner(owner.session, request_id)
    first = researcher.request(request_id).result()
    request = researcher.request(request_id).run()
    second = request.result()
    assert first != second
    with pytest.raises(Exception, match="used all 2 of its runs"):
        researcher.request(request_id).run()
    grant = next(g for g in owner.budgets.list() if g["email"] == RESEARCHER_EMAIL)
    assert grant["spent_epsilon"] - grant_before["spent_epsilon"] == pytest.approx(0.2)


def test_the_dask_cluster_ran_the_jobs(site) -> None:
    *_, scheduler = site
    if scheduler is None:
        pytest.skip("the local executor has no cluster to ask")
    from distributed import Client

    with Client(scheduler, set_as_default=False) as client:
        computed = client.run_on_scheduler(
            lambda dask_scheduler: {
                name: prefix.state_counts.get("memory", 0)
                for name, prefix in dask_scheduler.task_prefixes.items()
            }
        )
    # the runs above (the several-runs test alone makes two) and the checker's dry-runs
    # were Dask tasks that finished
    assert computed.get("datasite-job-run", 0) >= 2, computed
    assert computed.get("datasite-job-check", 0) >= 1, computed


def test_run_cut_off_by_a_crash_is_failed_after_restart(tmp_path) -> None:
    env = {"DATASITE_RUN_WALL_SECONDS": "120", "DATASITE_NO_PROGRESS": "1"}
    url = create_pg_database() if use_postgres() else None
    server = EmbeddedSite(
        tmp_path / "site",
        database_url=url,
        owner_email=OWNER_EMAIL,
        owner_password=OWNER_PASSWORD,
        env=env,
    ).start()
    try:
        owner, researcher, _, _ = setup_site(server.url)
        researcher.create_project("Study")
        source = "def slow(df):\n    import time\n    time.sleep(300)\n    return 1\n"
        request_id = submit_source(researcher.session, source, "slow", epsilon=0.5)
        approve_as_owner(owner.session, request_id)
        wait_state(owner.session, request_id, ("running",))
        spent = next(g for g in owner.budgets.list() if g["email"] == RESEARCHER_EMAIL)
        server.kill()
        server.start()
        owner = admin.connect(server.url, OWNER_EMAIL, OWNER_PASSWORD)
        request = owner.requests.get(request_id)
        assert request.state == "failed"
        assert request.runs[-1]["error_type"] == "Interrupted"
        assert "stopped while this run was in flight" in request.runs[-1]["error_message"]
        after = next(g for g in owner.budgets.list() if g["email"] == RESEARCHER_EMAIL)
        assert after["spent_epsilon"] == pytest.approx(spent["spent_epsilon"])
        researcher = rkc.login(server.url, RESEARCHER_EMAIL, RESEARCHER_PASSWORD)
        assert researcher.request(request_id).state == "failed"
        # nothing of the killed run is still alive
        assert not [
            p
            for p in psutil.process_iter(["cmdline"])
            if p.info["cmdline"] and "time.sleep(300)" in " ".join(p.info["cmdline"])
        ]
    finally:
        server.stop()
