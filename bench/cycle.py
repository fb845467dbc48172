"""The full cycle on a 1,000,000-row, 5-column asset, on our datasite.

upload -> submit -> (automatic policy check) -> approve -> run a DP mean -> fetch,
repeated N times against one real server process, plus 20 researchers submitting 5 jobs
each at once. Prints JSON and writes ``bench/results/datasite_cycle.json``.

    .venv/bin/python bench/cycle.py --cycles 5 --rows 1000000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import psutil

import researcher_kit.client as rkc
from datasite import admin
from datasite.client.embedded import EmbeddedSite

sys.path.insert(0, str(Path(__file__).with_name("pysyft")))
# shared with the PySyft side, which cannot import the project
from table import CYCLE_STEPS, make_mock, make_table, percentile, summarize  # noqa: E402

OWNER, OWNER_PW = "owner@bench.example", "bench-owner-password"
RESULTS = Path(__file__).with_name("results")

# A DP mean of a clamped column with a known row count (change-one neighbours).
DP_MEAN = """
def dp_mean_age(df):
    import opendp.prelude as dp
    dp.enable_features("contrib")
    ages = df["age"].to_numpy(dtype=float).clip(18, 90)
    laplace = dp.m.make_laplace(dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float),
                                scale=(90 - 18) / len(ages) / 1.0)
    return laplace(float(ages.mean()))
"""


def tree_rss(pid: int) -> tuple[float, float]:
    """RSS in MB of the server process, and of it with all its children."""
    proc = psutil.Process(pid)
    own = proc.memory_info().rss
    total = own + sum(c.memory_info().rss for c in proc.children(recursive=True))
    return own / 2**20, total / 2**20


def one_cycle(
    url: str, real: pd.DataFrame, mock: pd.DataFrame, index: int, researcher_pw: str
) -> dict[str, float]:
    times: dict[str, float] = {}
    owner = admin.connect(url, OWNER, OWNER_PW)
    t = time.perf_counter()
    owner.datasets.upload(name=f"bench-{index}", assets={"t": (real, mock)}, progress=False)
    times["upload"] = time.perf_counter() - t
    researcher = rkc.login(url, "bench@uni.example", researcher_pw)
    owner.budgets.grant("bench@uni.example", f"bench-{index}", epsilon=10.0)
    t = time.perf_counter()
    request_id = researcher.session.post(
        "/requests",
        json={
            "project": "bench",
            "dataset": f"bench-{index}",
            "entry": "dp_mean_age",
            "source": DP_MEAN,
            "bindings": {"df": "t"},
            "epsilon": 1.0,
            "mechanisms": ["make_laplace"],
        },
    )["id"]
    times["submit"] = time.perf_counter() - t
    t = time.perf_counter()
    rkc.Request(owner.session, {"id": request_id}).wait(until=("checked",))
    times["check"] = time.perf_counter() - t
    # The reviewer's approval, as on PySyft's side: find the pending request, approve it.
    t = time.perf_counter()
    pending = owner.requests.pending()
    times["approve_find"] = time.perf_counter() - t
    assert [p.id for p in pending] == [request_id], [p.id for p in pending]
    t = time.perf_counter()
    pending[0].approve()
    times["approve_call"] = time.perf_counter() - t
    times["approve"] = times["approve_find"] + times["approve_call"]
    t = time.perf_counter()
    request = rkc.Request(researcher.session, {"id": request_id}).wait()
    times["run"] = time.perf_counter() - t
    t = time.perf_counter()
    value = request.result()
    times["fetch"] = time.perf_counter() - t
    assert isinstance(value, float), value
    # ``wait`` already brought the finished run, so ``result()`` above asks nothing more;
    # a handle that knows only the id makes the one round trip (``/result``).
    t = time.perf_counter()
    again = rkc.Request(researcher.session, {"id": request_id}).result()
    times["fetch_round_trip"] = time.perf_counter() - t
    assert again == value, (again, value)
    # The cycle (upload, submit, approve, run, fetch), the steps PySyft has too;
    # our automatic policy check has no PySyft twin, so it is reported beside it.
    times["cycle"] = sum(times[s] for s in CYCLE_STEPS)
    times["cycle_with_check"] = times["cycle"] + times["check"]
    return times


def concurrent_load(url: str, researchers: int, jobs: int) -> dict[str, object]:
    """``researchers`` accounts submit ``jobs`` each at once; every job must complete."""
    owner = admin.connect(url, OWNER, OWNER_PW)
    small = make_table(10_000, seed=1)
    owner.datasets.upload(name="load", assets={"t": (small, small.head(100))}, progress=False)
    owner.policies.set("load", auto_approve=True, max_epsilon_per_request=1.0)
    sessions = []
    for i in range(researchers):
        email = f"load{i}@uni.example"
        owner.users.create(email=email, name=f"R{i}", password="load-password-1")
        owner.budgets.grant(email, "load", epsilon=100.0)
        site = rkc.login(url, email, "load-password-1")
        site.create_project("load")
        sessions.append(site)
    context_count = (
        "def count(ctx):\n    import polars as pl\n"
        "    return ctx.query().select(pl.len().dp.noise()).release().collect().item()\n"
    )

    def work(site: rkc.Site) -> list[float]:
        latencies = []
        ids = []
        starts = {}
        for _ in range(jobs):
            starts_t = time.perf_counter()
            rid = site.session.post(
                "/requests",
                json={
                    "project": "load",
                    "dataset": "load",
                    "entry": "count",
                    "source": context_count,
                    "bindings": {"ctx": "t"},
                    "epsilon": 0.1,
                    "kind": "context",
                },
            )["id"]
            ids.append(rid)
            starts[rid] = starts_t
        for rid in ids:
            request = rkc.Request(site.session, {"id": rid}).wait(
                timeout=900, until=("released", "failed", "denied", "checked")
            )
            latencies.append((request.state, time.perf_counter() - starts[rid]))
        return latencies

    t = time.perf_counter()
    with ThreadPoolExecutor(max_workers=researchers) as pool:
        outcomes = [item for chunk in pool.map(work, sessions) for item in chunk]
    wall = time.perf_counter() - t
    states = [s for s, _ in outcomes]
    latencies = [lat for _, lat in outcomes]
    return {
        "researchers": researchers,
        "jobs_each": jobs,
        "submitted": len(outcomes),
        "released": states.count("released"),
        "other_states": {s: states.count(s) for s in set(states) if s != "released"},
        "wall_seconds": wall,
        "latency_p50": percentile(latencies, 50),
        "latency_p95": percentile(latencies, 95),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--researchers", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS / "datasite_cycle.json")
    args = parser.parse_args()

    real = make_table(args.rows)
    mock = make_mock()
    with (
        tempfile.TemporaryDirectory() as folder,
        EmbeddedSite(
            Path(folder) / "site",
            owner_email=OWNER,
            owner_password=OWNER_PW,
            env={"DATASITE_NO_PROGRESS": "1"},
        ) as site,
    ):
        time.sleep(1.0)
        idle_server_mb, idle_tree_mb = tree_rss(site.process.pid)
        owner = admin.connect(site.url, OWNER, OWNER_PW)
        owner.users.create(email="bench@uni.example", name="Bench", password="bench-password-1")
        rkc.login(site.url, "bench@uni.example", "bench-password-1").create_project("bench")
        samples: dict[str, list[float]] = {}
        for index in range(args.cycles + 1):  # the first cycle warms the sandbox workers
            times = one_cycle(site.url, real, mock, index, "bench-password-1")
            if index == 0:
                continue
            for step, seconds in times.items():
                samples.setdefault(step, []).append(seconds)
        after_server_mb, after_tree_mb = tree_rss(site.process.pid)
        load = concurrent_load(site.url, args.researchers, args.jobs)
    result = {
        "system": "datasite",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "rows": args.rows,
        "columns": 5,
        "cycles": args.cycles,
        "steps": summarize(samples),
        "rss_mb": {
            "server_idle": idle_server_mb,
            "tree_idle": idle_tree_mb,
            "server_after_cycles": after_server_mb,
            "tree_after_cycles": after_tree_mb,
        },
        "concurrent": load,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
