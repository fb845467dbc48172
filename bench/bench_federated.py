"""Federated DP training (issue 19): a round's overhead on top of local training, per site.

Real datasite servers (``EmbeddedSite``) on loopback, each holding ``rows_per_site`` rows
of a synthetic 10-feature table. One ``rk.federated`` plan of a logistic regression
(DP-SGD, one local epoch per round, expected batch 64) is submitted to every site and
approved by each owner; round 1 runs at approval, and rounds 2.. are timed:

- ``local_train_s``: what one site's round computes, in this process on the same rows
  and with the same settings (``federated.site_round``: the DP row count, Opacus'
  noise fitted to the round's epsilon, the training, the safetensors weights), on one
  thread as on the site (its workers run with ``OMP_NUM_THREADS=1``); the median of
  ``--repeats`` runs before the servers start and as many after they stop, in the same
  run as the rest.
- ``site_run_s``: the sites' own record of each round's run (``duration_seconds``: the
  sandbox job with its releaser process), the mean over sites and timed rounds.
- ``round_s``: the coordinator's wall time for one round: start the run on every site
  with the global weights (HTTP, safetensors base64), long-poll each for its output,
  download it, FedAvg; the median over the timed rounds.
- ``overhead_s = round_s - local_train_s`` and ``ratio = round_s / local_train_s``.
- ``blind_job_floor_s``: for scale, the smallest data-blind job on the same rows (one
  ``dp.count``) through the sandbox (``LocalExecutor``: jailed job and releaser process,
  no server), the median of ``--repeats`` after a first one; most of a round's overhead
  is this fixed cost of a sandboxed run.

With several sites the sites train at the same time on this machine's cores, so
``round_s`` also holds their contention for the CPU (``cpus`` says how many there are;
``load_1min`` is the machine's load average when the row was measured: other work on a
shared machine shows there).

    .venv/bin/python bench/bench_federated.py [--sites 1 3] [--rows 1000 10000] [--rounds 4]

Writes ``bench/results/federated.json`` (a list of objects) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).parent / "results" / "federated.json"
OWNER, OWNER_PASSWORD = "owner@bench.example", "bench-password-1"
RESEARCHER, RESEARCHER_PASSWORD = "researcher@bench.example", "bench-password-2"
FEATURES = [f"x{i}" for i in range(10)]
BATCH = 64


def table(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, (rows, len(FEATURES)))
    w = np.linspace(-2.0, 2.0, len(FEATURES))
    y = (x @ w + rng.normal(0.0, 0.5, rows) > 0).astype("int64")
    frame = pd.DataFrame(x, columns=FEATURES)
    frame["y"] = y
    return frame


def plan_for(rows: int, rounds: int) -> Any:
    from researcher_kit import federated

    return federated.Plan(
        arch=[{"type": "linear", "in": len(FEATURES), "out": 1}],
        features=FEATURES, target="y", rounds=rounds, local_epochs=1.0,
        epsilon=1.0 * rounds, delta=1e-6, count_epsilon=0.05, lr=1.0,
        sample_rate=BATCH / rows, batch_size=BATCH,
        feature_bounds=[(0.0, 1.0)] * len(FEATURES),
    )  # fmt: skip


def local_train_s(plan: Any, frame: pd.DataFrame, repeats: int) -> list[float]:
    """One site's round computed here, from a round-1 model (as rounds 2.. start)."""
    import torch

    from researcher_kit import federated

    torch.set_num_threads(1)
    first = federated.site_round(frame, plan.settings(), None)
    args = {"params": {"round": 2}, "weights": first["model"]["weights"]}
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        federated.site_round(frame, plan.settings(), args)
        times.append(time.perf_counter() - started)
    return times


COUNT = """
from researcher_kit import dp

def f(df):
    return dp.count(df, epsilon=0.05)
"""


def blind_job_floor_s(frame: pd.DataFrame, repeats: int, work: Path) -> float:
    """The smallest data-blind job on ``frame`` through the sandbox, no server."""
    from datasite.contract.job import JobSpec, RequestKind
    from datasite.execution.executor import LocalExecutor

    path = work / "rows.parquet"
    frame.to_parquet(path)
    os.chmod(work, 0o755)
    os.chmod(path, 0o644)
    spec = JobSpec(job_id="floor", source=COUNT, entry="f", kind=RequestKind.BLIND,
                   inputs={"df": str(path)}, epsilon=0.05)  # fmt: skip
    times = []
    with LocalExecutor(concurrency=1) as executor:
        for _ in range(repeats + 1):
            started = time.perf_counter()
            result = executor.submit(spec).result()
            times.append(time.perf_counter() - started)
            assert result.ok, result.error_message
    return statistics.median(times[1:])


def start_sites(count: int, rows: int, work: Path) -> tuple[list[Any], list[Any], dict[str, Any]]:
    import researcher_kit as rk
    from datasite import admin
    from datasite.client.embedded import EmbeddedSite

    servers, owners, assets = [], [], {}
    mock = table(200, seed=999)
    for i in range(count):
        server = EmbeddedSite(
            work / f"site{i}", owner_email=OWNER, owner_password=OWNER_PASSWORD,
            env={"DATASITE_NO_PROGRESS": "1"},
        ).start()  # fmt: skip
        servers.append(server)
        owner = admin.connect(server.url, OWNER, OWNER_PASSWORD)
        owner.datasets.upload(
            name="Study", assets={"rows": (table(rows, seed=i), mock)},
            description="synthetic", summary="rows", progress=False,
        )  # fmt: skip
        owner.users.create(
            email=RESEARCHER, name="Researcher", role="researcher", password=RESEARCHER_PASSWORD
        )
        owner.budgets.grant(RESEARCHER, "Study", epsilon=100.0, delta=1e-4)
        owners.append(owner)
        researcher = rk.login(server.url, RESEARCHER, RESEARCHER_PASSWORD)
        assets[f"site{i}"] = researcher.datasets["Study"].assets["rows"]
    return servers, owners, assets


def approve(owner: Any, request_id: int) -> None:
    import researcher_kit.client as rkc

    rkc.Request(owner.session, {"id": request_id}).wait(timeout=600, until=("checked",))
    owner.session.post(
        f"/requests/{request_id}/approve", json={"justification": "bench: federated rounds"}
    )


def measure(sites: int, rows: int, rounds: int, repeats: int) -> dict[str, Any]:
    from researcher_kit import federated

    plan = plan_for(rows, rounds)
    local_times = local_train_s(plan, table(rows, seed=0), repeats)
    with tempfile.TemporaryDirectory(prefix="bench-federated-") as tmp:
        servers, owners, assets = start_sites(sites, rows, Path(tmp))
        try:
            federation = federated.submit(plan, assets)
            for owner, state in zip(owners, federation.sites.values(), strict=True):
                approve(owner, state.request.id)
            result = federation.run(timeout=600)
            assert result.rounds_completed == rounds, result.stopped
            timed = [t["seconds"] for t in result.timings if t["round"] > 1]
            site_runs = []
            for owner, state in zip(owners, federation.sites.values(), strict=True):
                runs = owner.requests.get(state.request.id).data["runs"][1:]
                site_runs += [r["duration_seconds"] for r in runs if r["duration_seconds"]]
        finally:
            for server in servers:
                server.stop()
    local_times += local_train_s(plan, table(rows, seed=0), repeats)
    with tempfile.TemporaryDirectory(prefix="bench-federated-floor-") as tmp:
        floor = blind_job_floor_s(table(rows, seed=0), repeats, Path(tmp))
    local = statistics.median(local_times)
    round_s = statistics.median(timed)
    return {
        "sites": sites,
        "rounds": rounds,
        "rows_per_site": rows,
        "steps_per_round": round(1 / plan.sample_rate),
        "local_train_s": round(local, 3),
        "site_run_s": round(statistics.mean(site_runs), 3),
        "round_s": round(round_s, 3),
        "overhead_s": round(round_s - local, 3),
        "ratio": round(round_s / local, 2),
        "blind_job_floor_s": round(floor, 3),
        "cpus": os.cpu_count(),
        "load_1min": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sites", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--rows", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    found = []
    header = f"{'sites':>5} {'rows/site':>9} {'local s':>8} {'site run s':>10} {'round s':>8} {'overhead s':>10} {'ratio':>6} {'floor s':>8}"  # noqa: E501
    print(header)
    for rows in args.rows:
        for sites in args.sites:
            row = measure(sites, rows, args.rounds, args.repeats)
            found.append(row)
            print(
                f"{row['sites']:>5} {row['rows_per_site']:>9} {row['local_train_s']:>8.3f} "
                f"{row['site_run_s']:>10.3f} {row['round_s']:>8.3f} {row['overhead_s']:>10.3f} "
                f"{row['ratio']:>6.2f} {row['blind_job_floor_s']:>8.3f}",
                flush=True,
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(found, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
