"""What data-blind execution costs: the README's DP mean on 1M rows, both ways, same run.

- ``in_process``: the old path, a raw-data request: the sandbox loads the whole table
  and the function calls ``rk.dp.mean`` on the DataFrame itself.
- ``data_blind``: the same ``rk.dp.mean`` on a blind frame: the sandbox holds no data,
  the releaser process reads the one column and releases the mean. It includes the
  release quantum (each answer that reads the data waits for the next multiple of
  50 ms, so release latency is no clock on the table's size). The job names the public
  schema as the site's do, so the releaser's start reads nothing and is not held.
- ``data_blind_no_quantum``: the same without the quantum, to show what the padding costs.

Every run is a full sandbox job through ``LocalExecutor`` (fork, namespaces, jail);
p50 and p95 over ``--runs`` runs each, interleaved so both meet the same machine
moments. Target (issue 12): data-blind at most 1.5x the in-process run.

Writes ``bench/results/blind.json``. Run: ``.venv/bin/python bench/bench_blind.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from datasite.contract.job import JobSpec, Limits, RequestKind
from datasite.execution.executor import LocalExecutor
from datasite.store.assets import column_types, describe_table

RESULTS = Path(__file__).parent / "results" / "blind.json"
MEAN = """
from researcher_kit import dp

def mean_age(df):
    return dp.mean(df["age"], bounds=(18, 90), epsilon=1.0)
"""


def table(rows: int, path: Path) -> None:
    """The cycle benchmark's shape: 5 columns, ``rows`` rows."""
    rng = np.random.default_rng(0)
    pd.DataFrame(
        {
            "id": np.arange(rows, dtype="int64"),
            "age": rng.integers(18, 90, rows).astype("int64"),
            "hours": rng.gamma(2.0, 1.0, rows),
            "score": rng.normal(0, 1, rows),
            "group": rng.integers(0, 5, rows).astype("int64"),
        }
    ).to_parquet(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-blind-"))
    folder.chmod(0o755)
    path = folder / "real.parquet"
    table(args.rows, path)
    path.chmod(0o644)
    # the site's job names the asset's public columns: the releaser's start reads nothing
    schemas = {"df": column_types(describe_table(path)[0])}
    base = JobSpec(job_id="b", source=MEAN, entry="mean_age", inputs={"df": str(path)},
                   schemas=schemas, epsilon=1.0, limits=Limits(wall_seconds=120))  # fmt: skip
    paths = {
        "in_process": base.model_copy(update={"kind": RequestKind.MECHANISM}),
        "data_blind": base.model_copy(update={"kind": RequestKind.BLIND}),
        "data_blind_no_quantum": base.model_copy(
            update={
                "kind": RequestKind.BLIND,
                "limits": Limits(wall_seconds=120, release_quantum_seconds=0.0),
            }
        ),  # fmt: skip
    }
    times: dict[str, list[float]] = {name: [] for name in paths}
    with LocalExecutor(concurrency=1) as executor:
        for spec in paths.values():  # warm-up: the worker's first fork, page cache
            assert executor.submit(spec).result().ok
        for i in range(args.runs):
            for name, spec in paths.items():
                started = time.perf_counter()
                result = executor.submit(spec.model_copy(update={"job_id": f"{name}-{i}"}))
                outcome = result.result()
                times[name].append(time.perf_counter() - started)
                assert outcome.ok, (outcome.error_type, outcome.error_detail)
    figures = {
        name: {"p50_s": round(float(np.median(t)), 4),
               "p95_s": round(float(np.percentile(t, 95)), 4)}
        for name, t in times.items()
    }  # fmt: skip
    floor = figures["in_process"]["p50_s"]
    for name in figures:
        figures[name]["ratio_to_in_process"] = round(figures[name]["p50_s"] / floor, 3)
    result = {
        "rows": args.rows,
        "runs": args.runs,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "target": "data_blind p50 at most 1.5x in_process p50",
        "paths": figures,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    for name, f in figures.items():
        print(f"{name:24s} p50 {f['p50_s'] * 1000:7.1f} ms  p95 {f['p95_s'] * 1000:7.1f} ms  "
              f"{f['ratio_to_in_process']:.2f}x the in-process run")  # fmt: skip


if __name__ == "__main__":
    main()
