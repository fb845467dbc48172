"""How long the policy checker takes on a trivial request and on the tutorial's request.

Targets on the 2-core reference machine: a trivial request < 1 s, the tutorial's request
(per-row Laplace on three columns, then a linear model) < 2 s, with the audit budget
given on the command line (default: the default policy's). Both run through the real
sandbox executor, already warm (its first start is measured separately).

    .venv/bin/python bench/bench_checker.py [--audit-seconds 0.5] [--repeats 5]

Writes ``bench/results/checker.json`` and prints the figures.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the corpus lives in tests/

from policies.checker import check_request  # noqa: E402
from policies.schema import AuditSettings, Policy  # noqa: E402
from tests.test_policies_corpus import CORPUS, header, mock_table  # noqa: E402

RESULTS = Path(__file__).with_name("results") / "checker.json"
TRIVIAL = """
def patient_count(df):
    import opendp.prelude as dp
    dp.enable_features("contrib")
    laplace = dp.m.make_laplace(dp.atom_domain(T=float, nan=False),
                                dp.absolute_distance(T=float), scale=2.0)
    return laplace(float(len(df)))
"""
TARGETS = {"trivial": 1.0, "tutorial": 2.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audit-seconds", type=float, default=AuditSettings().time_budget_seconds)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from datasite.execution.executor import make_executor

    policy = Policy(
        max_epsilon_per_request=2.0,
        audit=AuditSettings(time_budget_seconds=args.audit_seconds),
    )
    tutorial = (CORPUS / "ok_tutorial_rows.py").read_text()
    requests = {
        "trivial": (TRIVIAL, "patient_count", 0.5),
        "tutorial": (tutorial, header(CORPUS / "ok_tutorial_rows.py")["entry"], 0.9),
    }
    with tempfile.TemporaryDirectory() as folder:
        mock = Path(folder) / "mock.parquet"
        mock_table(442).to_parquet(mock)
        Path(folder).chmod(0o755)
        mock.chmod(0o644)
        started = time.perf_counter()
        executor = make_executor("local", 1)
        figures: dict[str, object] = {}
        try:
            for name, (source, entry, epsilon) in requests.items():
                times, stages, verdict = [], [], ""
                for i in range(args.repeats + 1):
                    t = time.perf_counter()
                    report = check_request(
                        source, entry, {"epsilon": epsilon, "mechanisms": ["make_laplace"]},
                        policy, {"df": str(mock)}, executor,
                    )  # fmt: skip
                    elapsed = time.perf_counter() - t
                    if i == 0:
                        figures["first_check_with_worker_start_s"] = round(
                            time.perf_counter() - started, 3
                        )
                        continue  # the first check starts the warm worker
                    times.append(elapsed)
                    stages.append(report.timings)
                    verdict = report.verdict
                median = statistics.median(times)
                figures[name] = {
                    "median_s": round(median, 3),
                    "min_s": round(min(times), 3),
                    "max_s": round(max(times), 3),
                    "target_s": TARGETS[name],
                    "ratio_to_target": round(median / TARGETS[name], 3),
                    "verdict": verdict,
                    "stage_medians_s": {
                        k: round(statistics.median(s.get(k, 0.0) for s in stages), 3)
                        for k in ("static", "dry_run", "audit")
                    },
                }
                print(
                    f"{name:9s} median {median:.3f} s (min {min(times):.3f}, max "
                    f"{max(times):.3f}); target {TARGETS[name]} s; verdict {verdict}; stages "
                    f"{figures[name]['stage_medians_s']}"
                )
        finally:
            executor.close()
    result = {
        "audit_seconds": args.audit_seconds,
        "repeats": args.repeats,
        "mock_rows": 442,
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        **figures,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"first check (incl. starting the warm worker): "
          f"{figures['first_check_with_worker_start_s']} s; wrote {RESULTS}")  # fmt: skip


if __name__ == "__main__":
    main()
