"""The code-request lifecycle, the one place that says which state may follow which.

    submitted -> checked -> approved | denied | auto_approved -> running -> released | failed

A raw-data run whose record does not match its dry-run goes ``running -> withheld``; the
owner then releases it (``withheld -> released``) or discards it (``withheld -> failed``).

A request that may run more than once goes back from ``released`` to ``running`` while it
has runs left; a policy change re-checks ``checked`` requests (checked -> checked).
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    SUBMITTED = "submitted"
    CHECKED = "checked"
    APPROVED = "approved"
    DENIED = "denied"
    AUTO_APPROVED = "auto_approved"
    RUNNING = "running"
    WITHHELD = "withheld"  # a raw-data run did not match its dry-run: the owner decides
    RELEASED = "released"
    FAILED = "failed"


ALLOWED: dict[State, frozenset[State]] = {
    State.SUBMITTED: frozenset({State.CHECKED}),
    State.CHECKED: frozenset({State.CHECKED, State.APPROVED, State.DENIED, State.AUTO_APPROVED}),
    State.APPROVED: frozenset({State.RUNNING}),
    State.AUTO_APPROVED: frozenset({State.RUNNING}),
    State.RUNNING: frozenset({State.RELEASED, State.FAILED, State.WITHHELD}),
    State.WITHHELD: frozenset({State.RELEASED, State.FAILED}),
    State.RELEASED: frozenset({State.RUNNING}),
    State.DENIED: frozenset(),
    State.FAILED: frozenset(),
}

PENDING = (State.SUBMITTED, State.CHECKED)


class TransitionError(ValueError):
    """A state change the lifecycle does not allow."""


def check_transition(current: str, target: State) -> None:
    """Raise ``TransitionError`` with a readable message unless ``current -> target`` is allowed.

    >>> check_transition("checked", State.APPROVED)
    >>> check_transition("denied", State.APPROVED)
    Traceback (most recent call last):
    ...
    datasite.contract.lifecycle.TransitionError: This request is denied; it cannot become approved.
    """
    if target not in ALLOWED[State(current)]:
        raise TransitionError(f"This request is {current}; it cannot become {target.value}.")
