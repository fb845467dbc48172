"""Reading the audit log (owner only). There is no route that changes it."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select
from sqlalchemy.orm import Session

from datasite.api.deps import MAX_ID, db_session, owner_only
from datasite.contract.schemas import AuditOut
from datasite.db.models import AuditEvent, User

router = APIRouter(tags=["audit"])


@router.get("/audit", response_model=list[AuditOut])
def list_audit(
    action: str | None = Query(default=None, max_length=64),
    actor: str | None = Query(default=None, max_length=320),
    target_type: str | None = Query(default=None, max_length=32),
    target_id: str | None = Query(default=None, max_length=64),
    limit: int = Query(default=200, ge=1, le=5000),
    offset: int = Query(default=0, ge=0, le=MAX_ID),
    _: User = Depends(owner_only),
    db: Session = Depends(db_session),
) -> list[AuditOut]:
    query = select(AuditEvent).order_by(AuditEvent.id.desc())
    if action:
        query = query.where(AuditEvent.action == action)
    if actor:
        query = query.where(AuditEvent.actor_email == actor.lower())
    if target_type:
        query = query.where(AuditEvent.target_type == target_type)
    if target_id:
        query = query.where(AuditEvent.target_id == target_id)
    rows = db.scalars(query.limit(limit).offset(offset))
    return [
        AuditOut(
            id=e.id,
            at=e.at,
            actor=e.actor_email or "(site)",
            action=e.action,
            target_type=e.target_type,
            target_id=e.target_id,
            detail=e.detail,
            address=e.address,
        )
        for e in rows
    ]
