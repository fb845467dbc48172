"""The lifecycle table: every allowed move, and a readable refusal for the rest."""

from __future__ import annotations

import itertools

import pytest

from datasite.contract.lifecycle import ALLOWED, State, TransitionError, check_transition

EXPECTED = {
    ("submitted", "checked"),
    ("checked", "checked"),
    ("checked", "approved"),
    ("checked", "denied"),
    ("checked", "auto_approved"),
    ("approved", "running"),
    ("auto_approved", "running"),
    ("running", "released"),
    ("running", "failed"),
    ("running", "withheld"),  # a raw-data run that did not match its dry-run
    ("withheld", "released"),  # the owner releases it
    ("withheld", "failed"),  # or discards it
    ("released", "running"),
}


def test_exactly_the_designed_transitions_are_allowed() -> None:
    allowed = {(a.value, b.value) for a, targets in ALLOWED.items() for b in targets}
    assert allowed == EXPECTED


@pytest.mark.parametrize(
    "current,target",
    sorted(
        (a.value, b.value)
        for a, b in itertools.product(State, State)
        if (a.value, b.value) not in EXPECTED
    ),
)
def test_every_other_transition_is_refused_with_a_message(current: str, target: str) -> None:
    with pytest.raises(
        TransitionError, match=f"This request is {current}; it cannot become {target}."
    ):
        check_transition(current, State(target))
