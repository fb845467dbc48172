"""The empirical audit on the Ding et al. corpus, at the default audit budget and at 4x.

For every corpus file with an ``# audit:`` header (``tests/corpus/ding_*.py`` and
``variant_*.py``), on the survey mock of ``tests/test_audit_ding.py``, in this process
(the corpus is our own code), under the file's privacy unit, for a few seeds, at the
default budget, at 4x it and at the file's own ``# audit-budget`` (the test's): the
verdict (``violation`` when the epsilon lower bound exceeds the declaration with a
counterexample), the lower bound, its
confidence, the time taken and the runs. Also the whole check of a trivial request at
the default budget through the real sandbox (target: under 2 s).

    .venv/bin/python bench/bench_audit.py [--seeds 3]

Writes ``bench/results/audit.json`` and prints a table.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the corpus lives in tests/

from policies.dp_audit import run_audit  # noqa: E402
from policies.schema import AuditSettings, Policy  # noqa: E402
from tests.test_audit_ding import (  # noqa: E402
    BEYOND,
    CASES,
    MAX_TRIALS,
    case_meta,
    load_case,
    survey_table,
)

RESULTS = Path(__file__).with_name("results") / "audit.json"
TRIVIAL = """
def patient_count(df):
    import numpy as np
    return float(len(df) + np.random.laplace(0.0, 2.0))
"""


def audit_row(path: Path, budget: float, seeds: int, max_trials: int) -> dict[str, object]:
    fn, meta = load_case(path)
    declared, delta = float(meta["epsilon"]), float(meta.get("delta", 0.0))
    runs = []
    for seed in range(seeds):
        started = time.perf_counter()
        found = run_audit(
            fn, {"df": survey_table()}, time_budget=budget, seed=seed, delta=delta,
            privacy_unit=meta.get("privacy-unit", "add_remove"), max_trials=max_trials,
        )  # fmt: skip
        caught = found["epsilon_lower_bound"] > declared and bool(found["counterexample"])
        runs.append(
            {
                "verdict": "violation" if caught else "none",
                "lower_bound": round(found["epsilon_lower_bound"], 3),
                "seconds": round(time.perf_counter() - started, 3),
                "trials": found["trials"],
            }
        )
    caught = sum(r["verdict"] == "violation" for r in runs)
    return {
        "declared_epsilon": declared,
        "privacy_unit": meta.get("privacy-unit", "add_remove"),
        "expected": meta["audit"],
        "budget_seconds": budget,
        "max_trials": max_trials,
        "confidence": 0.95,
        "detected": f"{caught}/{seeds}",
        "verdict": "violation" if caught == seeds else ("none" if caught == 0 else "mixed"),
        "median_lower_bound": statistics.median(r["lower_bound"] for r in runs),
        "median_seconds": statistics.median(r["seconds"] for r in runs),
        "median_trials": statistics.median(r["trials"] for r in runs),
        "runs": runs,
    }


def trivial_check(budget: float) -> float | None:
    """Seconds for a trivial raw-data request's whole check in the real sandbox."""
    try:
        from datasite.execution.executor import make_executor
    except ImportError:
        return None
    from policies.checker import check_request
    from tests.test_policies_corpus import mock_table

    policy = Policy(audit=AuditSettings(time_budget_seconds=budget))
    declaration = {"kind": "mechanism", "epsilon": 0.5, "delta": 0.0, "mechanisms": []}
    executor = make_executor("local", 1)
    try:
        with tempfile.TemporaryDirectory() as folder:
            mock = Path(folder) / "mock.parquet"
            mock_table(200).to_parquet(mock)
            args = (TRIVIAL, "patient_count", declaration, policy, {"df": str(mock)}, executor)
            check_request(*args)  # warm the sandbox
            times = []
            for _ in range(3):
                started = time.perf_counter()
                check_request(*args)
                times.append(time.perf_counter() - started)
        return round(statistics.median(times), 3)
    finally:
        if hasattr(executor, "close"):
            executor.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    default = AuditSettings().time_budget_seconds
    load_before = os.getloadavg()[0]
    table: dict[str, dict[str, object]] = {}
    for path in CASES:
        meta = case_meta(path)
        own = float(meta.get("audit-budget", default))
        budgets = sorted({default, 4 * default, own})  # the test's own budget too
        # the test's cap on fresh runs goes with its budget
        cap = {own: int(meta.get("audit-max-trials", MAX_TRIALS))}
        rows = {f"{b:g}s": audit_row(path, b, args.seeds, cap.get(b, MAX_TRIALS)) for b in budgets}
        table[path.stem] = {"beyond_the_audit": BEYOND.get(path.stem), **rows}
        cells = "  ".join(
            f"{k}: {r['detected']} lb={r['median_lower_bound']:.2f} "
            f"t={r['median_seconds']:.2f}s n={r['median_trials']:g}"
            for k, r in rows.items()
        )
        print(f"{path.stem:42s} {rows[f'{default:g}s']['expected']:9s} {cells}", flush=True)
    trivial = trivial_check(default)
    print(f"trivial request, whole check at the default budget: {trivial} s (target < 2 s)")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": f"{platform.machine()}, {platform.python_version()}",
                "cpus": os.cpu_count(),
                "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                "default_budget_seconds": default,
                "seeds": args.seeds,
                "trivial_check_seconds": trivial,
                "algorithms": table,
            },
            indent=1,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
