"""Stage 3 of the checker: an empirical audit of the privacy loss, StatDP-style.

:func:`audit_call` (harness ``policies.audit:audit_call``) runs the request again and
again on the mock ``D`` and on neighbours ``D'`` (one row removed, added or changed to
the extremes) within a time budget, and returns the numeric outputs it saw. In the
parent, :func:`analyse` then

- flags outputs that are the same on every run on ``D`` (deterministic) yet differ on a
  neighbour: a data-dependent output with no noise at all;
- estimates a lower bound on epsilon (Ding et al., "Detecting Violations of Differential
  Privacy", CCS 2018): on a first part of the samples, pick the event ``output > t`` or
  ``output < t`` where the two datasets differ most; on the rest, bound
  ``P[event | D]`` from below and ``P[event | D']`` from above with Clopper-Pearson
  intervals; ``log`` of their ratio is an epsilon that the request's true epsilon is at
  least, with the stated confidence (Bonferroni-corrected over outputs and directions).

A correct Laplace count at epsilon 0.1 stays below 0.1; the same count with
``scale=epsilon`` (far less noise) shows a lower bound of several units.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from policies import neighbours, outputs

PILOT_RUNS = 5
MAX_COMPONENTS = 8
MIN_TEST_SAMPLES = 40


def _load(inputs: dict[str, Any]) -> dict[str, Any]:
    return {k: pd.read_parquet(v) if isinstance(v, str) else v for k, v in inputs.items()}


def _observe(fn: Callable[..., Any], inputs: dict[str, Any]) -> tuple[dict[str, str], Any]:
    value = fn(**inputs)
    return {name: outputs.fingerprint(v) for name, v in outputs.split(value)}, value


def _components(value: Any) -> dict[str, float]:
    return dict(outputs.numeric_components(value, limit=MAX_COMPONENTS))


def audit_call(fn: Callable[..., Any], inputs: dict[str, Any], spec: Any) -> dict[str, Any]:
    """Sandbox harness: sample the request's outputs on the mock and its neighbours.

    Options (``spec.harness_options``): ``time_budget`` seconds, ``max_trials`` runs per
    dataset. Returns JSON-able samples of numeric outputs (of the mock only).
    """
    options = dict(spec.harness_options or {})
    budget = float(options.get("time_budget", 1.0))
    max_trials = int(options.get("max_trials", 4000))
    started = time.perf_counter()
    base = _load(inputs) if spec.kind == "mechanism" else {}
    if not any(isinstance(v, pd.DataFrame) and len(v) > 1 for v in base.values()):
        return {"skipped": "no table inputs to build neighbours from"}
    candidates = {
        name: neighbours.neighbour_inputs(base, make)
        for name, make in neighbours.NEIGHBOURS.items()
    }
    # Pilot: a few runs everywhere, for determinism and to choose the neighbour.
    pilot: dict[str, list[tuple[dict[str, str], dict[str, float]]]] = {}
    for name, data in [("base", base), *candidates.items()]:
        pilot[name] = []
        for _ in range(PILOT_RUNS):
            prints, value = _observe(fn, data)
            pilot[name].append((prints, _components(value)))
            enough = 2 if name == "base" else 1  # the least the determinism check needs
            if time.perf_counter() - started > budget / 2 and len(pilot[name]) >= enough:
                break
    deterministic = _deterministic(pilot)
    chosen = _choose(pilot)
    samples: dict[str, list[list[float]]] = {"base": [], "neighbour": []}
    keys = sorted({k for _, comps in pilot["base"] for k in comps})[:MAX_COMPONENTS]
    for label, rows in (("base", pilot["base"]), ("neighbour", pilot[chosen])):
        samples[label] = [[comps.get(k, math.nan) for k in keys] for _, comps in rows]
    trials = 0
    while time.perf_counter() - started < budget and trials < max_trials:
        for label, data in (("base", base), ("neighbour", candidates[chosen])):
            comps = _components(fn(**data))
            samples[label].append([comps.get(k, math.nan) for k in keys])
        trials += 1
    return {
        "neighbour": chosen,
        "components": keys,
        "samples": {k: _matrix(v, len(keys)) for k, v in samples.items()},
        "deterministic": deterministic,
        "trials": len(samples["base"]),
        "seconds": time.perf_counter() - started,
    }


def _matrix(rows: list[list[float]], width: int) -> np.ndarray:
    return np.array(rows, dtype=float).reshape(len(rows), width)


def _deterministic(pilot: dict[str, list[tuple[dict[str, str], Any]]]) -> list[dict[str, Any]]:
    """Outputs identical on every base run that differ on some neighbour."""
    found = []
    base = pilot["base"]
    for output in base[0][0] if base else {}:
        values = {prints.get(output) for prints, _ in base}
        if len(values) != 1 or len(base) < 2:
            continue
        (value,) = values
        moved = [
            name
            for name, rows in pilot.items()
            if name != "base" and any(prints.get(output) != value for prints, _ in rows)
        ]
        found.append({"output": output, "changes_on": moved})
    return found


def _choose(pilot: dict[str, list[tuple[dict[str, str], dict[str, float]]]]) -> str:
    """The neighbour whose pilot outputs moved furthest from the base's, in noise units."""
    base = [comps for _, comps in pilot["base"]]
    best, best_score = "remove_last", -1.0
    for name, rows in pilot.items():
        if name == "base":
            continue
        score = 0.0
        for key in base[0] if base else {}:
            a = np.array([c.get(key, np.nan) for c in base], dtype=float)
            b = np.array([c.get(key, np.nan) for _, c in rows], dtype=float)
            spread = np.nanstd(np.concatenate([a, b])) + 1e-12
            score = max(score, abs(np.nanmean(a) - np.nanmean(b)) / spread)
        if score > best_score:
            best, best_score = name, score
    return best


# -- the statistics, in the parent ------------------------------------------------------


def clopper_pearson(successes: int, trials: int, alpha: float) -> tuple[float, float]:
    """Two one-sided (1 - alpha) bounds on a binomial proportion."""
    from scipy.stats import beta

    low = 0.0 if successes == 0 else float(beta.ppf(alpha, successes, trials - successes + 1))
    high = (
        1.0
        if successes == trials
        else float(beta.ppf(1 - alpha, successes + 1, trials - successes))
    )
    return low, high


def epsilon_lower_bound(
    a: np.ndarray, b: np.ndarray, alpha: float, select_fraction: float = 0.3
) -> float:
    """A (1 - alpha)-confidence lower bound on epsilon from samples on D (a) and D' (b)."""
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    n_sel_a, n_sel_b = int(len(a) * select_fraction), int(len(b) * select_fraction)
    if min(len(a) - n_sel_a, len(b) - n_sel_b) < MIN_TEST_SAMPLES:
        return 0.0
    sel_a, test_a, sel_b, test_b = a[:n_sel_a], a[n_sel_a:], b[:n_sel_b], b[n_sel_b:]
    pooled = np.concatenate([sel_a, sel_b])
    best: tuple[float, float, bool, bool] = (0.0, 0.0, True, True)
    for t in np.unique(np.quantile(pooled, np.linspace(0.02, 0.98, 25))):
        for above in (True, False):
            pa = ((sel_a > t) if above else (sel_a < t)).mean()
            pb = ((sel_b > t) if above else (sel_b < t)).mean()
            for first_is_a in (True, False):
                num, den = (pa, pb) if first_is_a else (pb, pa)
                score = math.log((num + 1 / len(sel_a)) / (den + 1 / len(sel_a)))
                if score > best[0]:
                    best = (score, float(t), above, first_is_a)
    _, t, above, first_is_a = best
    if best[0] <= 0:
        return 0.0
    hits_a = int(((test_a > t) if above else (test_a < t)).sum())
    hits_b = int(((test_b > t) if above else (test_b < t)).sum())
    if not first_is_a:
        hits_a, hits_b, n_num, n_den = hits_b, hits_a, len(test_b), len(test_a)
    else:
        n_num, n_den = len(test_a), len(test_b)
    p_num_low, _ = clopper_pearson(hits_a, n_num, alpha / 2)
    _, p_den_high = clopper_pearson(hits_b, n_den, alpha / 2)
    if p_num_low <= 0 or p_den_high <= 0:
        return 0.0
    return max(0.0, math.log(p_num_low / p_den_high))


def analyse(payload: dict[str, Any], confidence: float) -> dict[str, Any]:
    """Epsilon lower bound per numeric output and the outputs with no noise at all."""
    if payload.get("skipped"):
        return {"skipped": payload["skipped"]}
    keys = payload.get("components", [])
    base = _matrix(payload["samples"]["base"], len(keys))
    other = _matrix(payload["samples"]["neighbour"], len(keys))
    alpha = (1 - confidence) / max(len(keys), 1)
    bounds = {}
    for i, key in enumerate(keys):
        column_a, column_b = base[:, i], other[:, i]
        bounds[key or "return"] = epsilon_lower_bound(column_a, column_b, alpha)
    data_dependent = [d for d in payload.get("deterministic", []) if d["changes_on"]]
    return {
        "epsilon_lower_bound": max(bounds.values(), default=0.0),
        "per_output": bounds,
        "deterministic_data_dependent": data_dependent,
        "trials": payload.get("trials", 0),
        "neighbour": payload.get("neighbour"),
        "seconds": payload.get("seconds", 0.0),
    }
