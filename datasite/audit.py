"""The append-only audit log: who did what, when, from where.

The API only ever inserts audit events; there is no route that updates or deletes one.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from datasite.db.models import AuditEvent, User


def record(
    db: Session,
    action: str,
    *,
    actor: User | None,
    address: str = "",
    target_type: str = "",
    target_id: object = "",
    actor_email: str | None = None,
    **detail: Any,
) -> AuditEvent:
    """Add an audit event to the current transaction and return it (flushed, with an id)."""
    event = AuditEvent(
        action=action,
        actor_id=actor.id if actor else None,
        actor_email=actor_email if actor_email is not None else (actor.email if actor else ""),
        address=address,
        target_type=target_type,
        target_id=str(target_id),
        detail=detail,
    )
    db.add(event)
    db.flush()
    return event
