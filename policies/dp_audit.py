"""Stage 3 of the checker: an empirical audit that looks for DP violations, StatDP-style.

:func:`audit_call` (harness ``policies.dp_audit:audit_call``) runs in the sandbox on the
mock only, never on private data. It builds neighbouring pairs of made-up tables from
the mock under the privacy unit (add/remove one row by default; see
:func:`policies.neighbours.audit_pairs`: rows removed, and rows at the columns' extremes
added in the adversarial patterns of Ding et al., "Detecting Violations of Differential
Privacy", CCS 2018), then

1. *screens*: runs the request a few dozen to a few hundred times on every pair (the
   base table's runs are shared), gives the pairs whose output moves most more runs, and
   ranks those by how well events chosen on half of their runs separate the other half
   (:func:`policies.dp_events.best_events`, learned score included);
2. *tests*: spends the rest of the time budget on fresh runs of the best-ranked pair.

In the parent, :func:`analyse` re-selects the event on the screening runs of that pair
(a threshold or value of one output or summary, the whole output, or a weighted sum of
the outputs learned on those runs: :func:`policies.dp_events.discriminant`) and
evaluates it on the fresh runs only: ``log`` of a Clopper-Pearson lower bound on
``P[E | D]`` over an upper bound on ``P[E | D']`` is an epsilon the request's true
epsilon is at least, at the policy's confidence. One event, one test: the search over
pairs and events happened on other samples, so no correction for it is needed.

An output that is identical on every one of dozens of runs on ``D`` and on ``D'`` but
differs between them carries no noise at all (``deterministic``); an output that varies
between runs on the same table is randomized, by a library or by the code itself.

>>> import pandas as pd
>>> df = pd.DataFrame({"x": [0.0, 1.0] * 50})
>>> def leaky(df):
...     return float(df["x"].sum()) + float(np.random.laplace(0.0, 0.1))
>>> found = run_audit(leaky, {"df": df}, time_budget=0.5, seed=1)
>>> found["epsilon_lower_bound"] > 1.0  # on whichever pair separated best
True
>>> found["counterexample"]["pair"].split()[0] in ("remove", "add")
True
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from policies import dp_events, neighbours, outputs

MAX_COMPONENTS = 16
MIN_TEST_SAMPLES = 40  # per table; fewer runs than this cannot show a bound
MIN_SCREEN_ROUNDS = 3  # per pair, time allowing, before the pairs are compared
MIN_DETERMINISTIC_RUNS = 30  # identical on this many runs per table before "no noise"
PROBE_RUNS = 12  # runs on the base table whose outputs are compared for randomness
SCREEN_SHARE = 0.15  # of the time budget: every pair, round-robin
NARROW_SHARE = 0.2  # of the time budget: the best few pairs, more runs, halving
NARROW_PAIRS = 6
#: Candidate events for ranking pairs are picked at this loose level (a few hundred runs
#: rarely show a bound at the policy's confidence), then judged on other runs.
RANK_ALPHA = 0.5
SELECT_SHARE = 0.3  # of the chosen pair's later runs, used to choose events, not to test
TESTED_EVENTS = 3  # events tested on the fresh runs (Bonferroni: alpha / 3 each)
#: Of the time budget, the least the fresh runs of the chosen pair get, even when the
#: screening overran (a stalled machine, one slow run): without fresh runs there is no
#: test at all, so the audit may end up to this share late.
FRESH_FLOOR = 0.25


def _load(inputs: dict[str, Any]) -> dict[str, Any]:
    return {k: pd.read_parquet(v) if isinstance(v, str) else v for k, v in inputs.items()}


def _components(value: Any) -> dict[str, float]:
    found: dict[str, float] = {}
    for name, part in outputs.split(value):
        for key, x in outputs.numeric_components(part, limit=MAX_COMPONENTS, prefix=name):
            found[key] = x
            if len(found) >= MAX_COMPONENTS:
                return found
    return found


def _matrix(rows: list[dict[str, float]], names: list[str]) -> np.ndarray:
    out = np.full((len(rows), len(names)), np.nan)
    where = {name: j for j, name in enumerate(names)}
    for i, row in enumerate(rows):
        for name, x in row.items():
            j = where.get(name)
            if j is not None:
                out[i, j] = x
    return out


def _portable(matrix: np.ndarray) -> np.ndarray:
    """A matrix as float64 (NaN kept). The result codec sends arrays as binary blobs, so
    an audit of 200,000 runs per table (~60 MB) stays out of the 16 MB message header."""
    return np.ascontiguousarray(matrix, dtype="<f8")


def _array(rows: Any, width: int) -> np.ndarray:
    if isinstance(rows, np.ndarray):
        return rows.astype(float).reshape(len(rows), width)
    data = [[np.nan if x is None else x for x in row] for row in rows]
    return np.array(data, dtype=float).reshape(len(data), width)


def _names(samples: list[list[dict[str, float]]]) -> list[str]:
    names: dict[str, None] = {}
    for rows in samples:
        for row in rows:
            for name in row:
                names.setdefault(name)
    return list(names)[:MAX_COMPONENTS]


class _Sampler:
    """Runs the request on a table (the other inputs unchanged) and keeps its outputs.

    Every run checks the clock: ``expired`` is true once the deadline has passed, so a
    slow request stops the audit after one run too many at most, never a batch.
    """

    def __init__(
        self, fn: Callable[..., Any], base: dict[str, Any], key: str, deadline: float
    ) -> None:
        self.fn, self.base, self.key, self.deadline = fn, base, key, deadline
        self.calls = 0

    def __call__(self, table: pd.DataFrame) -> Any:
        self.calls += 1
        return self.fn(**{**self.base, self.key: table})

    @property
    def expired(self) -> bool:
        return time.perf_counter() > self.deadline


def _score(
    a: list[dict[str, float]],
    b: list[dict[str, float]],
    alpha: float,
    delta: float,
    projected: int,
) -> float:
    """How much a pair's runs suggest a leak: how the narrowed pairs are compared.

    Honest on purpose: the events (and the learned score's weights) are chosen on one
    half of the runs and judged on the other, by the bound each would show with
    ``projected`` fresh runs per table at the test's ``alpha``, then the other way round,
    and the two judgements averaged (a less noisy ranking: on iSVT3 at 16-20 s it chose
    the leakiest pair in 11 of 11 seeds, one split alone in 9 of 11). The best of a
    thousand candidate events on the same few hundred runs looks alike for every pair,
    leaky or not.
    """
    names = _names([a, b])
    n = min(len(a), len(b))
    half = n // 2
    if not names or half < 2:
        return 0.0
    width = len(names)
    x, y = (dp_events.with_derived(_matrix(rows[:n], names)) for rows in (a, b))
    first, second = slice(0, half), slice(half, n)

    def judged(choose: slice, judge: slice) -> float:
        weights = dp_events.discriminant(x[choose, :width], y[choose, :width])
        xs, ys = (dp_events.with_score(m, width, weights) for m in (x, y))
        events = dp_events.best_events(xs[choose], ys[choose], RANK_ALPHA, delta, count=5,
                                       width=width)  # fmt: skip
        return max((dp_events.projected_bound(e, xs[judge], ys[judge], projected, alpha, delta)
                    for e in events), default=0.0)  # fmt: skip

    # both ways round (cross-fitting): half the variance of one split, as honest
    return (judged(first, second) + judged(second, first)) / 2


def _effect(a: list[dict[str, float]], b: list[dict[str, float]]) -> float:
    """How far the change of table moves the output, in units of its run-to-run spread.

    Screening runs are coupled (the same seed for NumPy's and ``random``'s generators on
    both tables of a round), so for code drawing from them the differences are the data's
    effect alone: exactly 0 where the changed row does not matter. Code with its own
    generator (OpenDP, ``default_rng()``) is not coupled; the measure is then a plain
    signal-to-noise ratio.
    """
    names = _names([a, b])
    n = min(len(a), len(b))
    if not names or n == 0:
        return 0.0
    x, y = (dp_events.with_derived(_matrix(rows[:n], names)) for rows in (a, b))
    x, y = np.nan_to_num(x, nan=-1.0), np.nan_to_num(y, nan=-1.0)
    moved = np.abs(y - x).mean(axis=0)
    spread = np.concatenate([x, y]).std(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(moved > 0, moved / np.maximum(spread, 1e-12), 0.0)
    return float(np.max(ratio)) if ratio.size else 0.0


def audit_call(fn: Callable[..., Any], inputs: dict[str, Any], spec: Any) -> dict[str, Any]:
    """Sandbox harness: screen the neighbouring pairs, then sample the chosen one afresh.

    Options (``spec.harness_options``): ``time_budget`` seconds, ``max_trials`` fresh runs
    per table at most, ``confidence``, ``privacy_unit`` (``add_remove`` | ``change``),
    ``seed`` (seeds NumPy's and ``random``'s global generators, for reproducible tests).
    Returns JSON-able samples of numeric outputs of made-up tables only.

    The time budget is spent in three parts: every pair round-robin (``SCREEN_SHARE``),
    the few best pairs again, halved stage by stage (``NARROW_SHARE``), then fresh runs
    of the best pair; the clock is read after every run, so the audit ends within one
    run of its budget, or of
    ``FRESH_FLOOR`` more when the earlier parts overran and left the test too little.
    """
    options = dict(spec.harness_options or {})
    budget = float(options.get("time_budget", 0.5))
    max_trials = int(options.get("max_trials", 20000))
    alpha = 1 - float(options.get("confidence", 0.95))
    unit = str(options.get("privacy_unit", "add_remove"))
    delta = float(options.get("delta", getattr(spec, "delta", 0.0)) or 0.0)
    if options.get("seed") is not None:
        np.random.seed(int(options["seed"]))
        random.seed(int(options["seed"]))
    base = _load(inputs) if spec.kind == "mechanism" else {}
    key = next((k for k, v in base.items() if isinstance(v, pd.DataFrame) and len(v) > 1), None)
    if key is None:
        return {"skipped": "no table inputs to build neighbours from"}
    pairs = neighbours.audit_pairs(base[key], unit)
    if not pairs:
        return {"skipped": "the mock is too small to build neighbours from"}
    fn(**base)  # warm-up, off the clock: the request's own imports and first-call costs
    started = time.perf_counter()
    run = _Sampler(fn, base, key, started + budget)
    tables: list[pd.DataFrame] = []
    index: list[tuple[int, int]] = []
    for _, d, d2 in pairs:  # shared tables (the mock itself) are run once per round
        slots = []
        for table in (d, d2):
            where = next((i for i, t in enumerate(tables) if t is table), None)
            if where is None:
                tables.append(table)
                where = len(tables) - 1
            slots.append(where)
        index.append((slots[0], slots[1]))
    samples: list[list[dict[str, float]]] = [[] for _ in tables]
    rng = np.random.default_rng(int(np.random.randint(2**31)))  # seeds for the screening
    prints: list[dict[str, str]] = []

    def sample(i: int, seed: int | None = None) -> None:
        if seed is not None:  # common random numbers: the same draws on D and D'
            np.random.seed(seed)
            random.seed(seed)
        value = run(tables[i])
        samples[i].append(_components(value))
        if i == index[0][0] and len(prints) < PROBE_RUNS:
            prints.append({n: outputs.fingerprint(v) for n, v in outputs.split(value)})

    # 1. Screening: every pair, round-robin, so that every pair has as many runs.
    screen_end = started + budget * SCREEN_SHARE
    rounds, cap, done = 0, max(MIN_SCREEN_ROUNDS, max_trials // 8), False
    screened = len(tables)
    while rounds < cap and not done:
        round_started = time.perf_counter()
        seed = int(rng.integers(2**31))
        for t in range(screened):
            sample(t, seed)
            late = time.perf_counter() > screen_end and rounds >= MIN_SCREEN_ROUNDS - 1
            if run.expired or late:
                done = True
                break
        rounds += 1
        if rounds == 1 and not done:
            # A slow request: screen only as many pairs (in order: removals, then the
            # patterns) as MIN_SCREEN_ROUNDS rounds fit in the screening share.
            each = (time.perf_counter() - round_started) / screened
            fits = int(budget * SCREEN_SHARE / (MIN_SCREEN_ROUNDS * max(each, 1e-9)))
            screened = max(2, min(screened, fits))
    live = [p for p, (i, j) in enumerate(index) if i < screened and j < screened]
    live = [p for p in live if samples[index[p][0]] and samples[index[p][1]]]
    scores = [0.0] * len(pairs)
    for p in live:
        i, j = index[p]
        scores[p] = _effect(samples[i], samples[j])
    # 2. Narrowing, by successive halving: the pairs that move the output most get more
    # runs; after each stage the better-ranked half of them stays, until one is left.
    best = sorted(live, key=lambda p: -scores[p])[:NARROW_PAIRS]
    per_run = (time.perf_counter() - started) / max(run.calls, 1)
    left = budget * (1 - SCREEN_SHARE - NARROW_SHARE) * (1 - SELECT_SHARE)
    projected = max(MIN_TEST_SAMPLES, int(left / (2 * per_run)))
    stages = math.ceil(math.log2(len(best))) if len(best) > 1 else 0
    for _ in range(stages):
        stage_end = time.perf_counter() + budget * NARROW_SHARE / stages
        wanted = sorted({t for p in best for t in index[p]})
        while not run.expired and time.perf_counter() < stage_end:
            seed = int(rng.integers(2**31))
            for t in wanted:
                sample(t, seed)
                if run.expired:
                    break
        for p in best:
            i, j = index[p]
            scores[p] = _score(samples[i], samples[j], alpha / TESTED_EVENTS, delta, projected)
        best = sorted(best, key=lambda p: -scores[p])[: (len(best) + 1) // 2]
    chosen = best[0] if best else 0
    i, j = index[chosen]
    # The global generators continue from an unpredictable state for the fresh runs.
    np.random.seed(int(rng.integers(2**31)))
    random.seed(int(rng.integers(2**31)))
    # 3. More runs of the chosen pair: the first SELECT_SHARE of them join the screening
    # runs to choose the events, the rest (fresh, never looked at before) test them.
    fresh: dict[str, list[dict[str, float]]] = {"base": [], "other": []}
    run.deadline = max(run.deadline, time.perf_counter() + budget * FRESH_FLOOR)
    while len(fresh["other"]) < max_trials and not run.expired:
        fresh["base"].append(_components(run(tables[i])))
        fresh["other"].append(_components(run(tables[j])))
    cut = int(len(fresh["base"]) * SELECT_SHARE)
    selection = [samples[i] + fresh["base"][:cut], samples[j] + fresh["other"][:cut]]
    fresh = {"base": fresh["base"][cut:], "other": fresh["other"][cut:]}
    names = _names([*selection, fresh["base"], fresh["other"]])
    screen_a, screen_b = _matrix(selection[0], names), _matrix(selection[1], names)
    every = {i: selection[0] + fresh["base"], j: selection[1] + fresh["other"]}
    deterministic: dict[str, dict[str, Any]] = {}
    matrices: dict[int, np.ndarray] = {}
    for p in [chosen, *live]:
        for t in index[p]:
            if t not in matrices:
                matrices[t] = _matrix(every.get(t, samples[t]), names)
        a, b = (matrices[t] for t in index[p])
        for item in _deterministic(a, b, names):
            entry = deterministic.setdefault(output_of(item["component"]), {**item, "pairs": []})
            if p not in entry["pairs"]:
                entry["pairs"].append(p)
    randomized = sorted(
        name for name in (prints[0] if prints else {}) if len({p.get(name) for p in prints}) > 1
    )
    return {
        "unit": unit,
        "delta": delta,
        "pairs": [name for name, _, _ in pairs],
        "pairs_screened": len(live),
        "selection_scores": scores,
        "chosen": chosen,
        "components": names,
        "screen_base": _portable(screen_a),
        "screen_other": _portable(screen_b),
        "test_base": _portable(_matrix(fresh["base"], names)),
        "test_other": _portable(_matrix(fresh["other"], names)),
        "deterministic": list(deterministic.values()),
        "randomized_outputs": randomized,
        "outputs": sorted(prints[0]) if prints else [],
        "screen_runs": rounds,
        "runs": run.calls,
        "seconds": time.perf_counter() - started,
    }


def _deterministic(a: np.ndarray, b: np.ndarray, names: list[str]) -> list[dict[str, Any]]:
    """Outputs constant over every run on D and on D' (enough runs) yet different.

    One entry per output (its first such component), however many components it has.
    """
    if min(len(a), len(b)) < MIN_DETERMINISTIC_RUNS:
        return []
    found: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(names):
        x = np.nan_to_num(a[:, k], nan=dp_events.NAN_KEY)
        y = np.nan_to_num(b[:, k], nan=dp_events.NAN_KEY)
        if np.all(x == x[0]) and np.all(y == y[0]) and x[0] != y[0]:
            found.setdefault(
                output_of(name),
                {"component": name, "runs": int(min(len(a), len(b)))},
            )
    return list(found.values())


# -- the statistics, in the parent ------------------------------------------------------


def clopper_pearson(successes: int, trials: int, alpha: float) -> tuple[float, float]:
    """Two one-sided (1 - alpha) bounds on a binomial proportion."""
    low, high = dp_events.clopper_pearson(successes, trials, alpha)
    return float(low), float(high)


def output_of(component: str) -> str:
    """The output a component belongs to: ``return[2]`` -> ``return``, ``a.b`` -> ``a``."""
    return component.split("[", 1)[0].split(".", 1)[0] or "return"


def analyse(payload: dict[str, Any], confidence: float) -> dict[str, Any]:
    """The epsilon lower bound, its counterexample, and the outputs with no noise at all."""
    if payload.get("skipped"):
        return {"skipped": payload["skipped"]}
    alpha = 1 - confidence
    delta = float(payload.get("delta", 0.0))
    names = list(payload.get("components", []))
    width = len(names)
    pairs = payload.get("pairs", [])
    chosen = int(payload.get("chosen", 0))
    sel_a = _array(payload.get("screen_base", []), width)  # the chosen pair's
    sel_b = _array(payload.get("screen_other", []), width)
    test_a = _array(payload.get("test_base", []), width)
    test_b = _array(payload.get("test_other", []), width)
    found: dict[str, Any] = {
        "epsilon_lower_bound": 0.0,
        "confidence": confidence,
        "unit": payload.get("unit", "add_remove"),
        "trials": len(test_a),
        "runs": payload.get("runs", 0),
        "seconds": payload.get("seconds", 0.0),
        "pair": pairs[chosen] if pairs else "",
        "pairs_tried": len(pairs),
        "randomized_outputs": payload.get("randomized_outputs", []),
        "outputs": payload.get("outputs", []),
        "counterexample": None,
        "deterministic_data_dependent": [],
    }
    for item in payload.get("deterministic", []):
        found["deterministic_data_dependent"].append(
            {
                "output": output_of(item["component"]),
                "component": item["component"],
                "changes_on": [pairs[p] for p in item.get("pairs", []) if p < len(pairs)],
                "runs": item["runs"],
            }
        )
    found["pairs_screened"] = payload.get("pairs_screened", len(pairs))
    derived = dp_events.derived_names(names)
    # A learned score (DP-Sniper's way) joins the outputs and their summaries: its weights
    # come from the selection runs only, so the fresh runs still test it fairly.
    weights = dp_events.discriminant(sel_a, sel_b)
    if weights is not None:
        derived.append(dp_events.describe_score(weights, names))
    sel_a, sel_b, test_a, test_b = (
        dp_events.with_score(dp_events.with_derived(m), width, weights)
        for m in (sel_a, sel_b, test_a, test_b)
    )
    events = dp_events.best_events(sel_a, sel_b, alpha, delta, count=TESTED_EVENTS, width=width)
    if not events or min(len(test_a), len(test_b)) < MIN_TEST_SAMPLES:
        found["too_few_runs"] = True
        return found
    # Several events, chosen on the screening runs, tested on the fresh ones: each at
    # alpha / len(events) (Bonferroni), so the largest bound holds at 1 - alpha.
    tested = [
        (*dp_events.evaluate_event(e, test_a, test_b, alpha / len(events), delta), e)
        for e in events
    ]
    bound, counts, event = max(tested, key=lambda t: t[0])
    found["epsilon_lower_bound"] = bound
    found["events_tested"] = len(events)
    column = derived[event.component] if 0 <= event.component < width else None
    found["counterexample"] = {
        "pair": found["pair"],
        "event": event.describe(derived),
        "output": output_of(column) if column else "return",
        "likelier_on": "the first table" if event.first_is_base else "the second table",
        **counts,
    }
    k = event.component if event.component >= 0 else 0
    if width:
        found["svg"] = dp_events.svg_histograms(test_a[:, k], test_b[:, k], "D", "D'")
    return found


def run_audit(
    fn: Callable[..., Any],
    tables: dict[str, Any],
    *,
    time_budget: float = 0.5,
    max_trials: int = 20000,
    confidence: float = 0.95,
    privacy_unit: str = "add_remove",
    seed: int | None = None,
    delta: float = 0.0,
) -> dict[str, Any]:
    """The whole audit in this process, for trusted code (tests, benchmarks) only."""
    options = {"time_budget": time_budget, "max_trials": max_trials, "confidence": confidence,
               "privacy_unit": privacy_unit, "seed": seed, "delta": delta}  # fmt: skip
    spec = SimpleNamespace(harness_options=options, kind="mechanism")
    return analyse(audit_call(fn, tables, spec), confidence)


def plain_words(found: dict[str, Any], declared: float) -> str:
    """The audit for a reviewer, in one paragraph."""
    unit = "differ in one row" if found.get("unit") != "change" else "differ in one row's values"
    text = (
        f"We ran the code {found['runs']} times on {found['pairs_tried']} pairs of made-up "
        f"tables built from the mock that {unit} (never on the private data), then "
        f"{found['trials']} more times on each table of the pair that looked most different "
        f"({found['pair']}), in {found['seconds']:.2f} s. "
    )
    bound, level = found["epsilon_lower_bound"], f"{found['confidence']:.0%}"
    ce = found.get("counterexample")
    if ce and bound > declared:
        text += (
            f"The outputs differ more than epsilon {declared:g} allows: the event "
            f'"{ce["event"]}" happened {ce["hits_base"]} of {ce["runs_base"]} times on one '
            f"table and {ce['hits_other']} of {ce['runs_other']} on the other, so epsilon is "
            f"at least {bound:.3g} ({level} confidence)."
        )
    else:
        text += (
            f"No violation found: epsilon is at least {bound:.3g} ({level} confidence), "
            f"within the declared {declared:g}. This shows no leak was found, not that "
            "the code is DP."
        )
    return text
