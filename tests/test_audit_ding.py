"""The empirical audit on Ding et al.'s algorithms (CCS 2018) and broken variants of ours.

Every corpus file with an ``# audit:`` header (``violation`` or ``none``) is audited on
a made-up survey table, in this process (``policies.dp_audit.run_audit``; the corpus is our
own code), with five seeds, one test each: an incorrect algorithm must show an epsilon lower bound
above its declaration with a counterexample in all five, a correct one in none. A file
may raise its audit budget (``# audit-budget: seconds``) above the test's 1 s (twice the
policy's default); ``bench/bench_audit.py`` reports every algorithm at the default
budget and at 4x it.

A file may also raise the fresh runs' cap (``# audit-max-trials``, the policy's
``audit.max_trials``): iSVT3 needs 40,000 runs per table, iSVT4 200,000 (60 s). An
algorithm beyond the audit at any budget the suite can afford would be marked
``xfail(strict=True)`` with the measured reason in :data:`BEYOND`; none is at present.
The sparse vector family declares
``# privacy-unit: change`` (Ding et al.'s neighbours, where queries move in opposite
directions; under add/remove they all move one way and these algorithms leak far less)
and asks ten queries, as StatDP's tests do.

The survey table is adversarial the way the paper's inputs are: every condition has the
same count (40), which is also the sparse vector's threshold, so that ties and
near-threshold answers, where these algorithms leak, are there to be found. Each patient
has one of the first five conditions and one of the last five.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from policies.dp_audit import FRESH_FLOOR, run_audit

#: the audit finds what it finds within a wall-clock budget: one per core, nothing else
pytestmark = pytest.mark.timed

CORPUS = Path(__file__).with_name("corpus")
CASES = sorted(p for p in CORPUS.glob("*.py") if "# audit:" in p.read_text())
CONDITIONS = ["asthma", "diabetes", "copd", "obesity", "hypertension"] + [
    "arthritis",
    "migraine",
    "eczema",
    "anaemia",
    "insomnia",
]
SEEDS = range(5)
MAX_TRIALS = 20000  # fresh runs per table at most: run_audit's default
BUDGET = 1.0  # seconds per audit: twice the policy's default (the bench reports both)
#: 19 algorithms x 5 seeds: several correct ones spend exactly their declared epsilon
#: (a Laplace count), where a 95% bound lands above it in up to 1 audit in 20 by design;
#: every case, correct or not, is judged at 99% so that 5 of 5 is a fair demand.
CONFIDENCE = 0.99
#: Incorrect algorithms the audit cannot catch 5 of 5 times at the budgets here, and why
#: (measured), marked ``xfail(strict=True)``. iSVT4 was here until its file asked 60 s and
#: 200,000 runs per table (at 48 s with 20,000 it gave 0.30-0.46 against 0.5).
BEYOND: dict[str, str] = {}


#: Calls a second of :func:`_probe`'s pandas work with two of these tests side by side on the
#: machine where the corpus files' budgets were last checked (2 cores, pandas 2.3.3,
#: 2026-12-04: 4,400-4,800; iSVT4 then got 105,000-131,000 runs per table in 60 s).
REFERENCE_PROBE = 4000.0


def _probe(table: pd.DataFrame) -> float:
    """Calls a second of what the corpus's functions do most (a column's sum, ten columns)."""
    rates = []
    for _ in range(3):
        start, calls = time.perf_counter(), 0
        while (elapsed := time.perf_counter() - start) < 0.1:
            for name in CONDITIONS:
                table[name].sum()
            calls += 1
        rates.append(calls / elapsed)
    return sorted(rates)[1]


#: The last probe, as (when, slowness): one test a core at a time runs for seconds to a
#: minute, so a probe of the last half minute still tells the load it runs under.
_last_probe: tuple[float, float] | None = None
PROBE_TTL = 30.0


def _slowness(table: pd.DataFrame) -> float:
    """The audit's budget is wall-clock time, and its power is the number of runs it gets:
    on a machine slower or busier than the one the budgets were set on (CI runs suites side
    by side; pandas 3 ran this code 3x slower) the test scales the budget by how much
    slower the probe runs, so that it judges about as many runs. Never below 1."""
    global _last_probe
    now = time.monotonic()
    if _last_probe is None or now - _last_probe[0] > PROBE_TTL:
        _last_probe = (now, max(1.0, REFERENCE_PROBE / _probe(table)))
    return _last_probe[1]


def params() -> list[Any]:
    """One test per case and seed, the costliest cases first: the timed tests run one per
    core (``--dist load`` hands them out in this order), so the long sparse-vector audits
    (iSVT4's five take about 4 minutes) are shared between the cores and the short ones
    fill in last."""
    out = []
    for path in sorted(CASES, key=lambda p: (-audit_budget(case_meta(p)), p.stem)):
        marks = []
        if path.stem in BEYOND:
            marks = [pytest.mark.xfail(strict=True, reason=BEYOND[path.stem])]
        for seed in SEEDS:
            out.append(pytest.param(path, seed, id=f"{path.stem}-seed{seed}", marks=marks))
    return out


def survey_table(rows: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(11)
    which = np.arange(rows) % 5
    other = (3 * np.arange(rows) + 1) % 5
    table = {c: (which == i).astype("int64") for i, c in enumerate(CONDITIONS[:5])}
    table |= {c: (other == i).astype("int64") for i, c in enumerate(CONDITIONS[5:])}
    visits = rng.integers(0, 5, rows)
    visits[:2] = 30  # two frequent visitors in the mock
    return pd.DataFrame(
        {"age": rng.integers(18, 91, rows).astype("int64"), **table, "visits": visits}
    )


def case_meta(path: Path) -> dict[str, str]:
    """A corpus file's ``# key: value`` header, without running the file."""
    meta: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        key, sep, value = line[1:].strip().partition(":")
        if sep:
            meta[key.strip()] = value.strip()
    return meta


def audit_budget(meta: dict[str, str]) -> float:
    """The test's audit budget for a case, before scaling: its own, never below 1 s."""
    return max(BUDGET, float(meta.get("audit-budget", BUDGET)))


def load_case(path: Path) -> tuple[Any, dict[str, str]]:
    meta = case_meta(path)
    namespace: dict[str, Any] = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)  # noqa: S102 - our corpus
    return namespace[meta["entry"]], meta


def test_corpus_has_the_papers_algorithms() -> None:
    names = {p.stem for p in CASES}
    paper = ["ding_svt", "ding_histogram", "ding_histogram_scale_eps"]
    paper += [f"ding_isvt{i}" for i in range(1, 5)]
    paper += [
        f"ding_noisy_max_{n}_{r}" for n in ("laplace", "exponential") for r in ("index", "value")
    ]
    for needed in paper:
        assert needed in names
    verdicts = [case_meta(p)["audit"] for p in CASES]
    assert verdicts.count("violation") >= 9 and verdicts.count("none") >= 6


@pytest.mark.slow
@pytest.mark.timeout(600)  # one audit of up to 60 s (iSVT4), scaled by the slowness
@pytest.mark.parametrize(("path", "seed"), params())
def test_audit_on_corpus(path: Path, seed: int) -> None:
    fn, meta = load_case(path)
    declared, delta = float(meta["epsilon"]), float(meta.get("delta", 0.0))
    table = survey_table()
    budget = audit_budget(meta) * _slowness(table)
    result = run_audit(
        fn, {"df": table}, time_budget=budget, seed=seed, delta=delta,
        confidence=CONFIDENCE, privacy_unit=meta.get("privacy-unit", "add_remove"),
        max_trials=int(meta.get("audit-max-trials", MAX_TRIALS)),
    )  # fmt: skip
    bound = round(result["epsilon_lower_bound"], 3)
    seen = (result["trials"], result["pair"][:30])
    if meta["audit"] == "violation":
        assert bound > declared, (bound, declared, seen)
        example = result["counterexample"]
        assert example["pair"] and example["event"], example
        assert example["hits_base"] != example["hits_other"], example
        assert "<svg" in result["svg"] and len(result["svg"]) < 6000
    else:
        assert bound <= declared, (bound, declared)
        assert not result["deterministic_data_dependent"]


def test_no_noise_is_deterministic_and_noise_is_not() -> None:
    table = survey_table()

    def raw(df: pd.DataFrame) -> list[bool]:
        return [bool(df[c].sum() >= 40) for c in CONDITIONS]

    def noisy_max(df: pd.DataFrame) -> int:
        counts = df[CONDITIONS].sum().to_numpy(dtype=float)
        return int(np.argmax(counts + np.random.laplace(0.0, 4.0, len(counts))))

    leaky = run_audit(raw, {"df": table}, seed=1)
    assert leaky["deterministic_data_dependent"]
    assert leaky["epsilon_lower_bound"] > 2
    fine = run_audit(noisy_max, {"df": table}, seed=1)
    assert not fine["deterministic_data_dependent"]
    assert fine["randomized_outputs"] == ["return"]


def test_default_budget_is_respected() -> None:
    fn, _ = load_case(CORPUS / "ding_svt.py")
    started = time.perf_counter()
    result = run_audit(fn, {"df": survey_table()}, time_budget=0.5, seed=0)
    assert time.perf_counter() - started < 1.0
    assert result["seconds"] < 0.5 + 0.25  # the clock is read after every run (a loaded
    # machine can stall one run by a tenth of a second: CI once saw 0.595)
    assert 2 * result["trials"] >= 0.2 * result["runs"]  # the test gets a good share


def test_a_slow_request_stops_the_audit_on_time() -> None:
    def slow(df: pd.DataFrame) -> float:
        time.sleep(0.05)  # 50 ms a run: a handful of runs fit
        return float(df["visits"].sum() + np.random.laplace(0.0, 20.0))

    result = run_audit(slow, {"df": survey_table()}, time_budget=0.3, seed=0)
    # the fresh runs' floor, then one pair of runs (two of 50 ms) past it at most
    assert result["seconds"] < 0.3 * (1 + FRESH_FLOOR) + 0.1 + 0.06
    assert result.get("too_few_runs") and result["counterexample"] is None


def test_a_stall_while_screening_still_leaves_a_test() -> None:
    # The machine stalls (another suite, a swap) for longer than the whole budget during
    # the screening: the chosen pair still gets its fresh runs, and the leak is found.
    fn, meta = load_case(CORPUS / "ding_isvt1.py")
    calls = 0

    def stalls_once(df: pd.DataFrame) -> Any:
        nonlocal calls
        calls += 1
        if calls == 50:
            time.sleep(1.2 * BUDGET)
        return fn(df)

    # add/remove: a removed row is among the first pairs screened, and it leaks plainly
    result = run_audit(stalls_once, {"df": survey_table()}, time_budget=BUDGET, seed=1)
    assert result["seconds"] < 1.2 * BUDGET + BUDGET * (1 + FRESH_FLOOR)
    assert result["trials"] >= 40
    assert result["epsilon_lower_bound"] > float(meta["epsilon"])


def test_vector_outputs_get_whole_output_events() -> None:
    # iSVT1: a TRUE where the table without the row can never give one (ties at 40). The
    # corpus's budget: at 0.5 s one CI run got 0.24 (256-617 trials give 1.5-2.4 here).
    fn, meta = load_case(CORPUS / "ding_isvt1.py")
    unit = meta["privacy-unit"]
    result = run_audit(fn, {"df": survey_table()}, time_budget=BUDGET, seed=3, privacy_unit=unit)
    assert result["epsilon_lower_bound"] > float(meta["epsilon"])
    assert result["counterexample"]["hits_base"] != result["counterexample"]["hits_other"]


def test_a_learned_score_finds_what_no_single_output_shows() -> None:
    # Ten yes/no answers; on the second table the first five are each a little likelier
    # and the last five a little less likely: every single answer, their count and every
    # whole answer vector separate the tables poorly; a weighted sum (+ first, - last)
    # learned on other runs separates them well (what the sparse vector leaks).
    from policies import dp_events

    rng = np.random.default_rng(5)
    shift = np.array([0.12] * 5 + [-0.12] * 5)

    def runs(n: int, moved: bool) -> np.ndarray:
        return (rng.random((n, 10)) < 0.5 + (shift if moved else 0.0)).astype(float)

    select_a, select_b = runs(3000, False), runs(3000, True)
    test_a, test_b = runs(3000, False), runs(3000, True)
    alpha = 0.01

    def tested(weights: Any) -> float:
        sel, test = (
            [dp_events.with_score(dp_events.with_derived(m), 10, weights) for m in pair]
            for pair in ((select_a, select_b), (test_a, test_b))
        )
        event = dp_events.best_event(*sel, alpha)
        assert event is not None
        return dp_events.evaluate_event(event, *test, alpha)[0]

    weights = dp_events.discriminant(select_a, select_b)
    assert weights is not None and np.all(weights[:5] > 0) and np.all(weights[5:10] < 0)
    without, with_score = tested(None), tested(weights)
    assert with_score > 2 * without and with_score > 0.5, (without, with_score)
    assert "weights learned on other runs" in dp_events.describe_score(weights, list("abcdefghij"))
