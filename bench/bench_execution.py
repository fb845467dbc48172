"""Sandbox latency: a trivial job through the warm worker vs a cold interpreter start.

Measures, on this machine:

- a trivial job (``return 1``) through ``LocalExecutor``: p50/p95 over N runs; every run
  is a full sandbox (fork, namespaces, chroot jail, uid drop, result message);
- a cold ``python -c`` that merely imports the stack the warm worker preloads (what
  each job would pay without the warm worker);
- a DP mean (OpenDP Laplace) over a 1,000,000-row Parquet input, end to end.

Writes ``bench/results/execution.json`` and prints a summary.
Run: ``.venv/bin/python bench/bench_execution.py [--runs 50]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from datasite.contract.job import JobSpec, Limits
from datasite.contract.results import decode_result
from datasite.execution.executor import LocalExecutor
from datasite.execution.worker import STACK

RESULTS = Path(__file__).parent / "results" / "execution.json"
DP_MEAN = """
import opendp.prelude as dp

def f(df):
    dp.enable_features("contrib")
    space = dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float)
    laplace = dp.m.make_laplace(*space, scale=72.0 / len(df))
    return laplace(float(df["age"].clip(18, 90).mean()))
"""


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def timed_jobs(executor: LocalExecutor, spec: JobSpec, runs: int) -> list[float]:
    seconds = []
    for i in range(runs):
        started = time.perf_counter()
        result = executor.submit(spec.model_copy(update={"job_id": f"bench-{i}"})).result()
        seconds.append(time.perf_counter() - started)
        assert result.ok, (result.error_type, result.error_detail)
    return seconds


def cold_imports(runs: int) -> list[float]:
    code = f"import importlib\nfor m in {STACK!r}: importlib.import_module(m)"
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        seconds.append(time.perf_counter() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--cold-runs", type=int, default=5)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        small, big = Path(tmp) / "small.parquet", Path(tmp) / "big.parquet"
        rng = np.random.default_rng(0)
        pd.DataFrame({"age": rng.integers(18, 90, 100)}).to_parquet(small)
        pd.DataFrame({"age": rng.integers(18, 90, args.rows)}).to_parquet(big)
        limits = Limits(wall_seconds=120, cpu_seconds=60)
        trivial = JobSpec(
            job_id="t",
            source="def f(df):\n    return 1\n",
            entry="f",
            inputs={"df": str(small)},
            epsilon=0.0,
            limits=limits,
        )
        dp_mean = trivial.model_copy(
            update={"source": DP_MEAN, "inputs": {"df": str(big)}, "epsilon": 1.0}
        )
        started = time.perf_counter()
        with LocalExecutor(concurrency=1) as executor:
            timed_jobs(executor, trivial, 1)  # waits for the worker's imports
            startup = time.perf_counter() - started
            warm = timed_jobs(executor, trivial, args.runs)
            dp = timed_jobs(executor, dp_mean, 5)
            last = executor.submit(dp_mean).result()
            noisy = decode_result(last.manifest, last.blobs)
    cold = cold_imports(args.cold_runs)

    figures = {
        "machine": {"python": platform.python_version(), "cpus": _cpus()},
        "trivial_job_warm_seconds": {
            "runs": args.runs,
            "p50": percentile(warm, 50),
            "p95": percentile(warm, 95),
            "max": max(warm),
        },
        "cold_import_stack_seconds": {"runs": args.cold_runs, "median": statistics.median(cold)},
        "speedup_cold_over_warm_p50": statistics.median(cold) / percentile(warm, 50),
        "worker_startup_seconds": startup,
        "dp_mean_1m_rows_seconds": {
            "rows": args.rows,
            "runs": len(dp),
            "median": statistics.median(dp),
            "max": max(dp),
            "in_sandbox_duration": last.duration_seconds,
            "noisy_mean": noisy,
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    w = figures["trivial_job_warm_seconds"]
    print(f"trivial job, warm worker: p50 {w['p50'] * 1000:.0f} ms, p95 {w['p95'] * 1000:.0f} ms")
    print(f"cold interpreter importing the stack: {statistics.median(cold):.2f} s")
    print(f"warm is {figures['speedup_cold_over_warm_p50']:.0f}x faster than a cold start")
    print(f"worker startup (first job): {startup:.2f} s")
    d = figures["dp_mean_1m_rows_seconds"]
    print(f"DP mean over {args.rows:,} rows: median {d['median']:.2f} s end to end")
    print(f"written to {RESULTS}")


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    main()
