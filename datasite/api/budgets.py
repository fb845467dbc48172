"""Privacy budgets: the owner grants, everyone reads what they may."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from datasite import audit_log, ledger
from datasite.api.datasets import find_dataset, refuse_if_archived
from datasite.api.deps import client_address, current_user, db_session, owner_only
from datasite.api.users import find_user
from datasite.contract.schemas import GrantIn, GrantOut, LedgerEntryOut
from datasite.db.models import BudgetGrant, LedgerEntry, User
from datasite.errors import Invalid

router = APIRouter(tags=["budgets"])


def grant_out(grant: BudgetGrant) -> GrantOut:
    return GrantOut(
        email=grant.user.email,
        dataset=grant.dataset.name,
        epsilon=grant.epsilon,
        delta=grant.delta,
        spent_epsilon=grant.spent_epsilon,
        spent_delta=grant.spent_delta,
        remaining_epsilon=max(grant.epsilon - grant.spent_epsilon, 0.0),
        remaining_delta=max(grant.delta - grant.spent_delta, 0.0),
    )


@router.get("/budgets", response_model=list[GrantOut])
def list_budgets(user: User = Depends(current_user), db: Session = Depends(db_session)) -> list:
    query = select(BudgetGrant).order_by(BudgetGrant.id)
    if user.role == "researcher":
        query = query.where(BudgetGrant.user_id == user.id)
    return [grant_out(g) for g in db.scalars(query)]


@router.put("/budgets", response_model=GrantOut)
def set_budget(
    body: GrantIn,
    request: Request,
    owner: User = Depends(owner_only),
    db: Session = Depends(db_session),
) -> GrantOut:
    researcher = find_user(db, body.email)
    if researcher.role != "researcher":
        raise Invalid(f"{researcher.email} is a {researcher.role}, not a researcher.")
    dataset = find_dataset(db, body.dataset)
    refuse_if_archived(dataset)
    grant = ledger.set_grant(db, researcher, dataset, body.epsilon, body.delta)
    audit_log.record(
        db,
        "budget_granted",
        actor=owner,
        address=client_address(request),
        target_type="grant",
        target_id=f"{researcher.email}/{dataset.name}",
        epsilon=body.epsilon,
        delta=body.delta,
    )
    db.commit()
    db.refresh(grant)
    return grant_out(grant)


@router.get("/ledger", response_model=list[LedgerEntryOut])
def list_ledger(user: User = Depends(current_user), db: Session = Depends(db_session)) -> list:
    query = select(LedgerEntry, BudgetGrant).join(BudgetGrant).order_by(LedgerEntry.id)
    if user.role == "researcher":
        query = query.where(BudgetGrant.user_id == user.id)
    return [
        LedgerEntryOut(
            id=e.id,
            email=g.user.email,
            dataset=g.dataset.name,
            request_id=e.request_id,
            kind=e.kind,
            epsilon=e.epsilon,
            delta=e.delta,
            audit_event_id=e.audit_event_id,
            created_at=e.created_at,
        )
        for e, g in db.execute(query)
    ]
