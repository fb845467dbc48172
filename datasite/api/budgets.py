"""Privacy budgets: the owner grants, everyone reads what they may (``datasite.budgets``)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session

from datasite import budgets
from datasite.api.deps import client_address, current_user, db_session, owner_only
from datasite.contract.schemas import GrantIn, GrantOut, LedgerEntryOut
from datasite.db.models import BudgetGrant, User

router = APIRouter(tags=["budgets"])


def grant_out(grant: BudgetGrant) -> GrantOut:
    left = budgets.remaining(grant)
    return GrantOut(
        email=grant.user.email,
        dataset=grant.dataset.name,
        epsilon=grant.epsilon,
        delta=grant.delta,
        spent_epsilon=grant.spent_epsilon,
        spent_delta=grant.spent_delta,
        remaining_epsilon=left.epsilon,
        remaining_delta=left.delta,
    )


@router.get("/budgets", response_model=list[GrantOut])
def list_budgets(user: User = Depends(current_user), db: Session = Depends(db_session)) -> list:
    return [grant_out(g) for g in budgets.list_grants(db, user)]


@router.put("/budgets", response_model=GrantOut)
def set_budget(
    body: GrantIn,
    request: Request,
    owner: User = Depends(owner_only),
    db: Session = Depends(db_session),
) -> GrantOut:
    grant = budgets.grant_budget(
        db, body.email, body.dataset, body.epsilon, body.delta,
        owner=owner, address=client_address(request),
    )  # fmt: skip
    return grant_out(grant)


@router.get("/ledger", response_model=list[LedgerEntryOut])
def list_ledger(user: User = Depends(current_user), db: Session = Depends(db_session)) -> list:
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
        for e, g in budgets.list_ledger(db, user)
    ]
