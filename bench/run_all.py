"""Run the datasite's and PySyft 0.9.5's cycle benchmarks in the same run and compare.

Both sides do upload -> submit -> approve -> run a DP mean -> fetch on the same
1,000,000-row, 5-column table (``bench/pysyft/table.py``), one after the other on this
machine, so the ratios compare like with like. PySyft runs in its own virtualenv, built
on first use by ``bench/setup_pysyft_venv.sh``.

    .venv/bin/python bench/run_all.py                 # both cycles, then the comparison
    .venv/bin/python bench/run_all.py --with-micro    # also the executor, checker, DP benches

Writes ``bench/results/cycle_comparison.json`` and ``cycle_comparison.md``; a ratio
above 1 means the datasite is faster (PySyft's time divided by ours).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
MICRO = ("bench_execution.py", "bench_checker.py", "bench_dp.py", "bench_http_floor.py")
#: Steps both systems time the same way (our "check" and PySyft's "login" have no twin);
#: approve is the reviewer's whole step, finding the pending request and approving it.
SHARED_STEPS = (
    "upload",
    "submit",
    "approve",
    "approve_find",
    "approve_call",
    "run",
    "fetch",
    "cycle",
)
#: Our ``fetch`` is ``result()`` after ``wait()``, whose last answer already carried the
#: run, so it makes no round trip; this is the fetch of a handle that knows only the id
#: (one round trip), compared with PySyft's fetch as well.
FETCH_ROUND_TRIP = "fetch_round_trip"
TWIN = {FETCH_ROUND_TRIP: "fetch"}


def run(command: list[str]) -> None:
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=BENCH.parent)


STEP_LABELS = {
    "approve": "approve (find + approve)",
    "approve_find": "- find the pending request",
    "approve_call": "- approve it",
    "fetch": "fetch (after wait: no round trip)",
    FETCH_ROUND_TRIP: "fetch, new handle (one round trip)",
}


def _ms(seconds: float) -> str:
    """Milliseconds, with two decimals below 10 ms."""
    ms = seconds * 1e3
    return f"{ms:.2f}" if ms < 10 else f"{ms:,.0f}"


def ratio(theirs: float, ours: float) -> float | None:
    return round(theirs / ours, 2) if ours > 0 else None


def compare(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """Per-step p50/p95 of both systems and PySyft/datasite ratios, plus memory."""
    steps = {}
    for step in (*SHARED_STEPS, FETCH_ROUND_TRIP):
        a = ours["steps"].get(step)
        b = theirs["steps"].get(TWIN.get(step, step))
        if a is None or b is None:
            continue
        steps[step] = {
            "datasite_p50": a["p50"],
            "pysyft_p50": b["p50"],
            "speedup_p50": ratio(b["p50"], a["p50"]),
            "datasite_p95": a["p95"],
            "pysyft_p95": b["p95"],
            "speedup_p95": ratio(b["p95"], a["p95"]),
        }
    memory = {
        key: {
            "datasite": ours["rss_mb"][key],
            "pysyft": theirs["rss_mb"][key],
            "pysyft_over_datasite": ratio(theirs["rss_mb"][key], ours["rss_mb"][key]),
        }
        for key in ("server_idle", "tree_idle", "server_after_cycles", "tree_after_cycles")
        if key in ours["rss_mb"] and key in theirs["rss_mb"]
    }
    check = ours["steps"].get("check")
    with_check = ours["steps"].get("cycle_with_check")
    return {
        "measured_at": ours["measured_at"],
        "rows": ours["rows"],
        "cycles": ours["cycles"],
        "pysyft_version": theirs.get("version"),
        "steps": steps,
        "rss_mb": memory,
        "datasite_concurrent": ours.get("concurrent"),
        "datasite_policy_check": check
        and {
            "check_p50": check["p50"],
            "check_p95": check["p95"],
            "cycle_with_check_p50": with_check["p50"],
            "speedup_with_check_p50": ratio(theirs["steps"]["cycle"]["p50"], with_check["p50"]),
        },
    }


def markdown(comparison: dict[str, Any]) -> str:
    lines = [
        f"# Cycle benchmark: datasite vs PySyft {comparison['pysyft_version']}",
        "",
        f"{comparison['rows']:,} rows x 5 columns, {comparison['cycles']} measured cycles "
        f"each (after one warm-up), same machine, same run ({comparison['measured_at']}).",
        "Speed-up = PySyft's seconds / the datasite's seconds.",
        "",
        "| step | datasite p50 ms | PySyft p50 ms | speed-up p50 | datasite p95 ms "
        "| PySyft p95 ms | speed-up p95 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for step, row in comparison["steps"].items():
        lines.append(
            f"| {STEP_LABELS.get(step, step)} | {_ms(row['datasite_p50'])} "
            f"| {_ms(row['pysyft_p50'])} | {row['speedup_p50']}x | {_ms(row['datasite_p95'])} "
            f"| {_ms(row['pysyft_p95'])} | {row['speedup_p95']}x |"
        )
    if FETCH_ROUND_TRIP in comparison["steps"]:
        lines += [
            "",
            "Our fetch is `req.result()` after `req.wait()`: the wait's last answer carried the "
            "finished run, so it asks the site nothing more. A handle that knows only the "
            "request id makes one round trip (`GET /requests/{id}/result`); that row compares "
            "it with PySyft's fetch too.",
        ]
    lines += [
        "",
        "| memory (RSS, MB) | datasite | PySyft | PySyft / datasite |",
        "|---|---:|---:|---:|",
    ]
    for key, row in comparison["rss_mb"].items():
        lines.append(
            f"| {key} | {row['datasite']:.0f} | {row['pysyft']:.0f} "
            f"| {row['pysyft_over_datasite']}x |"
        )
    check = comparison.get("datasite_policy_check")
    if check:
        lines += [
            "",
            f"PySyft has no policy checker; the datasite checks every request before a "
            f"reviewer sees it (static analysis, dry-run, audit): p50 {check['check_p50']:.2f} s, "
            f"p95 {check['check_p95']:.2f} s. With it the cycle is "
            f"{check['cycle_with_check_p50']:.2f} s at p50, "
            f"{check['speedup_with_check_p50']}x faster than PySyft's cycle without one.",
        ]
    load = comparison.get("datasite_concurrent")
    if load:
        lines += [
            "",
            f"Datasite under load: {load['researchers']} researchers x {load['jobs_each']} "
            f"jobs submitted at once: {load['released']}/{load['submitted']} released in "
            f"{load['wall_seconds']:.1f} s (latency p50 {load['latency_p50']:.1f} s, "
            f"p95 {load['latency_p95']:.1f} s).",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--with-micro", action="store_true", help="also the micro-benchmarks")
    parser.add_argument(
        "--compare-only", action="store_true", help="only redo the comparison from the results"
    )
    args = parser.parse_args()

    if not args.compare_only:
        run(["bash", str(BENCH / "setup_pysyft_venv.sh")])
        sizes = ["--rows", str(args.rows), "--cycles", str(args.cycles)]
        run([sys.executable, str(BENCH / "cycle.py"), *sizes])
        syft_python = str(BENCH / ".venv-syft" / "bin" / "python")
        run([syft_python, str(BENCH / "pysyft" / "cycle.py"), *sizes])
    if args.with_micro and not args.compare_only:
        for script in MICRO:
            run([sys.executable, str(BENCH / script)])

    ours = json.loads((RESULTS / "datasite_cycle.json").read_text())
    theirs = json.loads((RESULTS / "pysyft_cycle.json").read_text())
    comparison = compare(ours, theirs)
    (RESULTS / "cycle_comparison.json").write_text(json.dumps(comparison, indent=2) + "\n")
    table = markdown(comparison)
    (RESULTS / "cycle_comparison.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
