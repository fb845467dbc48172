"""The privacy ledger: grants per researcher and dataset, and every epsilon spent.

Spending is a single conditional UPDATE (``spent + cost <= granted``) in the transaction
that approves the request. The database evaluates the condition against the row it locks,
so concurrent approvals serialize on the grant row on PostgreSQL and on the write lock on
SQLite: the total spent can never exceed the grant. The statements are built once, in
``datasite.db.statements``.
"""

from __future__ import annotations

from sqlalchemy import Update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from datasite.db.models import BudgetGrant, CodeRequest, Dataset, User
from datasite.db.statements import GRANT, LEDGER_ENTRY, SPEND, SPEND_TOLERANCE, SPEND_UNCHECKED
from datasite.errors import BudgetError


def ensure_grant(
    db: Session, user_id: int, dataset_id: int, epsilon: float, delta: float
) -> BudgetGrant:
    """The grant for (user, dataset), created with the given default when missing."""
    key = {"user_id": user_id, "dataset_id": dataset_id}
    found = db.scalar(GRANT, key)
    if found is not None:
        return found
    try:
        with db.begin_nested():
            grant = BudgetGrant(
                user_id=user_id, dataset_id=dataset_id, epsilon=epsilon, delta=delta
            )
            db.add(grant)
        return grant
    except IntegrityError:  # created concurrently
        return db.scalars(GRANT, key).one()


def set_grant(
    db: Session, user: User, dataset: Dataset, epsilon: float, delta: float
) -> BudgetGrant:
    """Set the total a researcher may spend; it cannot go below what is already spent."""
    grant = ensure_grant(db, user.id, dataset.id, epsilon, delta)
    db.refresh(grant)
    # The float rounding the conditional UPDATE (``SPEND``) allows, allowed here too.
    tolerance = SPEND_TOLERANCE
    if epsilon + tolerance < grant.spent_epsilon or delta + tolerance < grant.spent_delta:
        raise BudgetError(
            f"{user.email} has already spent epsilon={grant.spent_epsilon:g}, "
            f"delta={grant.spent_delta:g} on {dataset.name}; the grant cannot be lower."
        )
    grant.epsilon, grant.delta = epsilon, delta
    return grant


def reserve(db: Session, request: CodeRequest, grant: BudgetGrant, audit_event_id: int) -> None:
    """Charge every run the request may make, or raise ``BudgetError`` and charge nothing."""
    epsilon = request.epsilon * request.runs_allowed
    delta = request.delta * request.runs_allowed
    if not _charge(db, SPEND, grant.id, request.id, "reserve", epsilon, delta, audit_event_id):
        db.refresh(grant)
        # Never below zero, as ``datasite.budgets.remaining`` (which imports this module).
        left_epsilon = max(grant.epsilon - grant.spent_epsilon, 0.0)
        left_delta = max(grant.delta - grant.spent_delta, 0.0)
        raise BudgetError(
            f"Not enough budget: the request needs epsilon={epsilon:g}, delta={delta:g}; "
            f"{request.author.email} has epsilon={left_epsilon:g}, "
            f"delta={left_delta:g} left on {request.dataset.name}."
        )


def refund(db: Session, request: CodeRequest, audit_event_id: int, runs: int = 1) -> None:
    """Give back the charge of ``runs`` runs that never touched private data."""
    key = {"user_id": request.author_id, "dataset_id": request.dataset_id}
    grant_id = db.scalars(GRANT.with_only_columns(BudgetGrant.id), key).one()
    epsilon, delta = -request.epsilon * runs, -request.delta * runs
    _charge(db, SPEND_UNCHECKED, grant_id, request.id, "refund", epsilon, delta, audit_event_id)


def _charge(
    db: Session,
    spend: Update,
    grant_id: int,
    request_id: int,
    kind: str,
    epsilon: float,
    delta: float,
    audit_event_id: int,
) -> bool:
    """Move the grant's spent totals and enter the charge in the ledger, linked to its
    request and audit event; False, with nothing written, when ``spend`` refuses it."""
    cost = {"grant_id": grant_id, "cost_epsilon": epsilon, "cost_delta": delta}
    if db.execute(spend, cost).rowcount != 1:
        return False
    entry = {"grant_id": grant_id, "request_id": request_id, "kind": kind}
    db.execute(
        LEDGER_ENTRY,
        {**entry, "epsilon": epsilon, "delta": delta, "audit_event_id": audit_event_id},
    )
    return True
