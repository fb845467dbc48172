"""How a federated plan travels inside a request's source, read without running it.

``rk.federated`` (``researcher_kit/federated.py``) sends each site one data-blind request
whose function is generated from the plan: the plan is a literal dict named
:data:`PLAN_NAME` in it. The reviewer pages read that literal (``ast.literal_eval``:
never executed) to show the request as one federated plan with its rounds. What is
*enforced* comes from the request itself, never from the literal: ``runs`` (one run
per round) and the per-run epsilon/delta the ledger reserves at approval;
:func:`rounds_summary` says when the literal disagrees with them.

>>> source = '''
... def federated_round(df, run_args=None):
...     FEDERATED_PLAN = {"rounds": 3, "epsilon": 3.0, "delta": 3e-6, "local_epochs": 1}
...     return FEDERATED_PLAN
... '''
>>> plan = plan_in_source(source)
>>> plan["rounds"]
3
>>> summary = rounds_summary(plan, runs=3, epsilon_per_run=1.0, delta_per_run=1e-6)
>>> summary["epsilon_total"], summary["mismatch"]
(3.0, [])
>>> for line in rounds_summary(plan, runs=5, epsilon_per_run=1.0, delta_per_run=1e-6)["mismatch"]:
...     print(line)
the plan says 3 rounds; the request allows 5 runs
the plan says epsilon 3.0 in all; the request reserves 5
the plan says delta 3e-06 in all; the request reserves 5e-06
"""

from __future__ import annotations

import ast
import math
from typing import Any

#: The name of the plan literal in a federated request's source.
PLAN_NAME = "FEDERATED_PLAN"
#: The name of the generated function (one round on one site).
ENTRY = "federated_round"


def plan_in_source(source: str) -> dict[str, Any] | None:
    """The federated plan a request's source carries, or None (read, never run)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id == PLAN_NAME
        ):
            try:
                found = ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                return None
            return found if isinstance(found, dict) else None
    return None


def _number(value: Any) -> float | None:
    try:
        found = float(value)
    except (TypeError, ValueError):
        return None
    return found if math.isfinite(found) else None


def rounds_summary(
    plan: dict[str, Any],
    runs: int | None = None,
    epsilon_per_run: float | None = None,
    delta_per_run: float | None = None,
) -> dict[str, Any]:
    """What a reviewer page shows of a plan: its rounds and the budget of all of them.

    ``runs``, ``epsilon_per_run`` and ``delta_per_run`` are the request's own (what the
    site enforces); given, they are the figures shown, and ``mismatch`` lists where the
    plan's literal says otherwise. Without them the literal's figures are shown.
    """
    stated_rounds = plan.get("rounds")
    stated_rounds = stated_rounds if isinstance(stated_rounds, int) and stated_rounds > 0 else None
    stated_epsilon, stated_delta = _number(plan.get("epsilon")), _number(plan.get("delta"))
    rounds = runs if runs is not None else (stated_rounds or 1)
    if epsilon_per_run is not None:
        epsilon_total = epsilon_per_run * rounds
    else:
        epsilon_total = stated_epsilon if stated_epsilon is not None else math.nan
    if delta_per_run is not None:
        delta_total = delta_per_run * rounds
    else:
        delta_total = stated_delta if stated_delta is not None else math.nan
    mismatch = []
    if runs is not None and stated_rounds != runs:
        mismatch.append(
            f"the plan says {plan.get('rounds')} rounds; the request allows {runs} runs"
        )
    if epsilon_per_run is not None and (
        stated_epsilon is None or not math.isclose(stated_epsilon, epsilon_total, rel_tol=1e-9)
    ):
        mismatch.append(
            f"the plan says epsilon {plan.get('epsilon')} in all; the request reserves "
            f"{epsilon_total:g}"
        )
    if delta_per_run is not None and (
        stated_delta is None or not math.isclose(stated_delta, delta_total, rel_tol=1e-9)
    ):
        mismatch.append(
            f"the plan says delta {plan.get('delta')} in all; the request reserves {delta_total:g}"
        )
    arch = plan.get("arch")
    layers = (
        [str(layer.get("type", "?")) for layer in arch if isinstance(layer, dict)]
        if isinstance(arch, list)
        else []
    )
    features = plan.get("features")
    return {
        "rounds": rounds,
        "epsilon_total": epsilon_total,
        "delta_total": delta_total,
        "epsilon_per_round": epsilon_total / rounds if rounds else math.nan,
        "delta_per_round": delta_total / rounds if rounds else math.nan,
        "count_epsilon": _number(plan.get("count_epsilon")),
        "local_epochs": _number(plan.get("local_epochs")),
        "clip": _number(plan.get("clip")),
        "noise": _number(plan.get("noise")),
        "on_dropout": str(plan.get("on_dropout", "continue")),
        "layers": layers,
        "features": [str(f) for f in features] if isinstance(features, list) else [],
        "target": plan.get("target") if isinstance(plan.get("target"), str) else None,
        "has_label": isinstance(plan.get("label"), dict),
        "mismatch": mismatch,
    }
