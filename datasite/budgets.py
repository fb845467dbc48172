"""Privacy budgets as people see them: what is granted, spent and left, and the ledger.

The owner grants a researcher a budget on a dataset (``grant_budget``); everyone lists
the grants and ledger entries they may see (a researcher only their own). What is left
of a grant is computed here only (``remaining``), for the API (``datasite.api.budgets``),
the ledger page and the request page. Spending is ``datasite.ledger``'s.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from datasite import audit_log, ledger
from datasite.accounts import find_user
from datasite.datasets import find_dataset, refuse_if_archived
from datasite.db.models import BudgetGrant, CodeRequest, Dataset, LedgerEntry, User
from datasite.db.statements import SPEND_TOLERANCE
from datasite.errors import Invalid


class Remaining(NamedTuple):
    """What is left of a grant: never below zero."""

    epsilon: float
    delta: float


def remaining(grant: BudgetGrant) -> Remaining:
    """What the grant's researcher has left to spend on its dataset.

    >>> remaining(BudgetGrant(epsilon=3.0, delta=1e-6, spent_epsilon=1.0, spent_delta=0.0))
    Remaining(epsilon=2.0, delta=1e-06)

    Spent can pass granted by a float's rounding; what is left is then zero, not less:

    >>> remaining(BudgetGrant(epsilon=0.3, delta=0.0, spent_epsilon=0.1 + 0.2, spent_delta=0.0))
    Remaining(epsilon=0.0, delta=0.0)
    """
    return Remaining(
        max(grant.epsilon - grant.spent_epsilon, 0.0), max(grant.delta - grant.spent_delta, 0.0)
    )


def covers(left: Remaining, epsilon: float, delta: float) -> bool:
    """Whether what is ``left`` pays for ``epsilon`` and ``delta`` (within float rounding).

    >>> covers(Remaining(0.3, 0.0), 0.1 + 0.2, 0.0), covers(Remaining(0.3, 0.0), 0.31, 0.0)
    (True, False)
    """
    return epsilon <= left.epsilon + SPEND_TOLERANCE and delta <= left.delta + SPEND_TOLERANCE


def grant_budget(
    db: Session,
    email: str,
    dataset_name: str,
    epsilon: float,
    delta: float,
    *,
    owner: User,
    address: str,
) -> BudgetGrant:
    """Set the total a researcher may spend on a dataset; audited and committed.

    Refused for an account that is not a researcher (``Invalid``), an archived dataset
    (``Conflict``) and a total below what is spent already (``BudgetError``).
    """
    researcher = find_user(db, email)
    if researcher.role != "researcher":
        raise Invalid(f"{researcher.email} is a {researcher.role}, not a researcher.")
    dataset = find_dataset(db, dataset_name)
    refuse_if_archived(dataset)
    grant = ledger.set_grant(db, researcher, dataset, epsilon, delta)
    audit_log.record(
        db,
        "budget_granted",
        actor=owner,
        address=address,
        target_type="grant",
        target_id=f"{researcher.email}/{dataset.name}",
        epsilon=epsilon,
        delta=delta,
    )
    db.commit()
    db.refresh(grant)
    return grant


def _visible(query: Select, viewer: User, researcher: str, dataset: str) -> Select:
    """``query`` (over grants, joined to their user and dataset) narrowed to what
    ``viewer`` may see (a researcher: their own) and to the filters given."""
    if viewer.role == "researcher":
        query = query.where(BudgetGrant.user_id == viewer.id)
    if researcher:
        query = query.where(User.email == researcher.strip().lower())
    if dataset:
        query = query.where(Dataset.name == dataset)
    return query


def _joined(query: Select) -> Select:
    return query.join(User, BudgetGrant.user_id == User.id).join(
        Dataset, BudgetGrant.dataset_id == Dataset.id
    )


def list_grants(
    db: Session, viewer: User, *, researcher: str = "", dataset: str = "", by_name: bool = False
) -> list[BudgetGrant]:
    """The grants ``viewer`` may see, of one ``researcher`` (email) and ``dataset`` (name)
    where given; in the order they were made, or by email and dataset name."""
    query = _visible(_joined(select(BudgetGrant)), viewer, researcher, dataset)
    order = (User.email, Dataset.name) if by_name else (BudgetGrant.id,)
    return list(db.scalars(query.order_by(*order)))


def list_ledger(
    db: Session,
    viewer: User,
    *,
    researcher: str = "",
    dataset: str = "",
    newest_first: bool = False,
    limit: int | None = None,
) -> list[tuple[LedgerEntry, BudgetGrant]]:
    """The ledger entries ``viewer`` may see, each with its grant, filtered like
    ``list_grants``; oldest first unless ``newest_first``, at most ``limit``."""
    query = _joined(
        select(LedgerEntry, BudgetGrant).join(BudgetGrant, LedgerEntry.grant_id == BudgetGrant.id)
    )
    query = _visible(query, viewer, researcher, dataset)
    query = query.order_by(LedgerEntry.id.desc() if newest_first else LedgerEntry.id)
    return [(entry, grant) for entry, grant in db.execute(query.limit(limit))]


def epsilon_spends(
    db: Session, viewer: User, *, researcher: str = "", dataset: str = "", limit: int | None = None
) -> list[tuple[datetime, str, str, float]]:
    """Each ledger entry's time, researcher email, dataset name and epsilon, oldest
    first (for the budget charts), filtered like ``list_grants``."""
    query = _joined(
        select(LedgerEntry.created_at, User.email, Dataset.name, LedgerEntry.epsilon).join(
            BudgetGrant, LedgerEntry.grant_id == BudgetGrant.id
        )
    )
    query = _visible(query, viewer, researcher, dataset).order_by(LedgerEntry.id)
    return [tuple(row) for row in db.execute(query.limit(limit))]


def request_budget(db: Session, request: CodeRequest) -> dict[str, Any]:
    """What ``request`` declares for all its runs against what its author has left on
    the dataset: ``runs``, ``epsilon``, ``delta``, and where there is a grant, ``grant``,
    ``left_epsilon``, ``left_delta`` and whether it ``fits``."""
    runs = request.runs_allowed
    grant = db.scalar(
        select(BudgetGrant).where(
            BudgetGrant.user_id == request.author_id,
            BudgetGrant.dataset_id == request.dataset_id,
        )
    )
    need_epsilon, need_delta = request.epsilon * runs, request.delta * runs
    view: dict[str, Any] = {"runs": runs, "epsilon": need_epsilon, "delta": need_delta}
    if grant is not None:
        left = remaining(grant)
        view.update(
            grant=grant,
            left_epsilon=left.epsilon,
            left_delta=left.delta,
            fits=covers(left, need_epsilon, need_delta),
        )
    return view
