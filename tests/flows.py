"""Helpers the integration tests share: submit raw source, wait for states, approve."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import researcher_kit.client as rkc
from datasite.client.http import ApiSession

#: A correct mechanism request: one Laplace release of the row count, for epsilon 0.1 with
#: a little room (scale 12, not 1 / 0.1 = 10): the checker's 95% audit may flag a request
#: that spends exactly its declaration now and then, and these flows approve without the
#: justification a flagged request needs.
NOISY_COUNT = (
    "def noisy_count(df):\n    import opendp.prelude as dp\n"
    "    dp.enable_features('contrib')\n"
    "    m = dp.m.make_laplace(dp.atom_domain(T=float, nan=False),"
    " dp.absolute_distance(T=float), scale=12.0)\n"
    "    return m(float(len(df)))\n"
)


def submit_source(
    session: ApiSession,
    source: str,
    entry: str,
    epsilon: float = 0.5,
    project: str = "Study",
    dataset: str = "Pings",
    runs: int = 1,
    kind: str = "mechanism",
    **extra: Any,
) -> int:
    """Submit ``source`` as a request and return its id."""
    body = {
        "project": project,
        "dataset": dataset,
        "entry": entry,
        "source": source,
        "bindings": {"df": "pings"},
        "epsilon": epsilon,
        "runs": runs,
        "kind": kind,
        **extra,
    }
    return session.post("/requests", json=body)["id"]


def wait_state(
    session: ApiSession, request_id: int, states: tuple[str, ...], timeout: float = 180.0
) -> rkc.Request:
    return rkc.Request(session, {"id": request_id}).wait(timeout=timeout, until=states)


def approve_as_owner(owner_session: ApiSession, request_id: int) -> dict[str, Any]:
    """Approve once checked, overriding a blocking report with a recorded justification."""
    wait_state(owner_session, request_id, ("checked",))
    return owner_session.post(
        f"/requests/{request_id}/approve",
        json={"justification": "test: approved to exercise the sandbox"},
    )


@contextmanager
def counting_calls(session: ApiSession) -> Iterator[list[str]]:
    """The paths ``session`` asks the site for inside the block."""
    calls: list[str] = []
    hooks = session.http.event_hooks["request"]
    hooks.append(lambda sent: calls.append(sent.url.path))
    try:
        yield calls
    finally:
        hooks.pop()
