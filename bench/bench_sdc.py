"""Disclosure-control checks on the crosstab of a 1M-row table (target: under 1 s).

A synthetic 1,000,000-row table (region x age band x a skewed income); the checks of
``policies.sdc`` on its crosstab, from the released table alone (threshold, small-number
suppression, rounding) and against the raw rows (cell counts, dominance and p-ratio of a
sum table), best of a few repeats.

    .venv/bin/python bench/bench_sdc.py

Writes ``bench/results/sdc.json`` and prints it.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from policies.sdc import SdcRules, check_table  # noqa: E402

ROWS = 1_000_000
REPEATS = 3


def table(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "region": rng.choice([f"r{i:02d}" for i in range(40)], ROWS, p=None),
            "ageband": rng.choice([f"a{i}" for i in range(12)], ROWS),
            "income": rng.pareto(1.5, ROWS) * 1000.0,
        }
    )


def best(fn) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    raw = table()
    crosstab = pd.crosstab(raw["region"], raw["ageband"])
    sums = raw.groupby(["region", "ageband"])["income"].sum()
    rules = SdcRules(threshold=10, suppress_at_or_below=7, round_to=5)
    results = {
        "rows": ROWS,
        "cells": int(crosstab.size),
        "crosstab_alone_seconds": best(lambda: check_table(crosstab, rules)),
        "crosstab_with_raw_rows_seconds": best(lambda: check_table(crosstab, rules, raw)),
        "sum_table_dominance_p_ratio_seconds": best(lambda: check_table(sums, rules, raw)),
        "target_seconds": 1.0,
        "machine": platform.platform(),
        "python": platform.python_version(),
    }
    results["under_target"] = all(
        v < 1.0 for k, v in results.items() if k.endswith("_seconds") and k != "target_seconds"
    )
    out = Path(__file__).parent / "results" / "sdc.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
