"""A federated plan on the request page: one request, its rounds, the budget of all of them.

A site's part of a federated training (``rk.federated``) is one request approved for
``rounds`` runs; each run is one round. The plan is read from the source's literal
(``datasite.contract.federated_plan``, never executed); the rounds and the budget come
from the request and its runs, which are what the site enforces.
"""

from __future__ import annotations

from typing import Any

from datasite.contract.federated_plan import plan_in_source, rounds_summary
from datasite.db.models import CodeRequest

#: What a round that has no run yet shows: its budget is reserved at approval.
NOT_STARTED = "not started"


def federated_view(code_request: CodeRequest) -> dict[str, Any] | None:
    """The plan's rounds for ``request.html``, or None when this is no federated request."""
    plan = plan_in_source(code_request.source or "")
    if plan is None:
        return None
    runs = list(code_request.runs)
    view = rounds_summary(
        plan,
        runs=code_request.runs_allowed,
        epsilon_per_run=code_request.epsilon,
        delta_per_run=code_request.delta,
    )
    view["table"] = [
        {
            "number": number,
            "state": runs[number - 1].state if number <= len(runs) else NOT_STARTED,
            "run": runs[number - 1] if number <= len(runs) else None,
        }
        for number in range(1, view["rounds"] + 1)
    ]
    view["rounds_started"] = min(len(runs), view["rounds"])
    return view
