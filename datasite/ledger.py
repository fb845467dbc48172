"""The privacy ledger: grants per researcher and dataset, and every epsilon spent.

Spending is a single conditional UPDATE (``spent + cost <= granted``) in the transaction
that approves the request. The database evaluates the condition against the row it locks,
so concurrent approvals serialize on the grant row on PostgreSQL and on the write lock on
SQLite: the total spent can never exceed the grant.
"""

from __future__ import annotations

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from datasite.db.models import AuditEvent, BudgetGrant, CodeRequest, Dataset, LedgerEntry, User

# Float sums of declared epsilons (0.1 + 0.2) must not fail a grant they exactly fill.
_TOLERANCE = 1e-9
#: Built once: approval reads it inside its transaction, where every statement counts.
_GRANT = select(BudgetGrant).where(
    BudgetGrant.user_id == bindparam("user_id"), BudgetGrant.dataset_id == bindparam("dataset_id")
)


class BudgetError(ValueError):
    """The request would spend more than the researcher has left."""


def ensure_grant(
    db: Session, user_id: int, dataset_id: int, epsilon: float, delta: float
) -> BudgetGrant:
    """The grant for (user, dataset), created with the given default when missing."""
    key = {"user_id": user_id, "dataset_id": dataset_id}
    found = db.scalar(_GRANT, key)
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
        return db.scalars(_GRANT, key).one()


def set_grant(
    db: Session, user: User, dataset: Dataset, epsilon: float, delta: float
) -> BudgetGrant:
    """Set the total a researcher may spend; it cannot go below what is already spent."""
    grant = ensure_grant(db, user.id, dataset.id, epsilon, delta)
    db.refresh(grant)
    if epsilon + _TOLERANCE < grant.spent_epsilon or delta + _TOLERANCE < grant.spent_delta:
        raise BudgetError(
            f"{user.email} has already spent epsilon={grant.spent_epsilon:g}, "
            f"delta={grant.spent_delta:g} on {dataset.name}; the grant cannot be lower."
        )
    grant.epsilon, grant.delta = epsilon, delta
    return grant


def reserve(
    db: Session, request: CodeRequest, grant: BudgetGrant, audit: AuditEvent
) -> LedgerEntry:
    """Charge every run the request may make, or raise ``BudgetError`` and charge nothing."""
    epsilon = request.epsilon * request.runs_allowed
    delta = request.delta * request.runs_allowed
    result = db.execute(
        update(BudgetGrant)
        .where(
            BudgetGrant.id == grant.id,
            BudgetGrant.spent_epsilon + epsilon <= BudgetGrant.epsilon + _TOLERANCE,
            BudgetGrant.spent_delta + delta <= BudgetGrant.delta + _TOLERANCE,
        )
        .values(
            spent_epsilon=BudgetGrant.spent_epsilon + epsilon,
            spent_delta=BudgetGrant.spent_delta + delta,
        )
    )
    if result.rowcount != 1:
        db.refresh(grant)
        raise BudgetError(
            f"Not enough budget: the request needs epsilon={epsilon:g}, delta={delta:g}; "
            f"{request.author.email} has epsilon={grant.epsilon - grant.spent_epsilon:g}, "
            f"delta={grant.delta - grant.spent_delta:g} left on {request.dataset.name}."
        )
    entry = LedgerEntry(
        grant_id=grant.id,
        request_id=request.id,
        kind="reserve",
        epsilon=epsilon,
        delta=delta,
        audit_event_id=audit.id,
    )
    db.add(entry)
    return entry


def refund(db: Session, request: CodeRequest, audit: AuditEvent, runs: int = 1) -> LedgerEntry:
    """Give back the charge of ``runs`` runs that never touched private data."""
    grant = db.scalars(
        select(BudgetGrant).where(
            BudgetGrant.user_id == request.author_id, BudgetGrant.dataset_id == request.dataset_id
        )
    ).one()
    epsilon, delta = request.epsilon * runs, request.delta * runs
    db.execute(
        update(BudgetGrant)
        .where(BudgetGrant.id == grant.id)
        .values(
            spent_epsilon=BudgetGrant.spent_epsilon - epsilon,
            spent_delta=BudgetGrant.spent_delta - delta,
        )
    )
    entry = LedgerEntry(
        grant_id=grant.id,
        request_id=request.id,
        kind="refund",
        epsilon=-epsilon,
        delta=-delta,
        audit_event_id=audit.id,
    )
    db.add(entry)
    return entry
