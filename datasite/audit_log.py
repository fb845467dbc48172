"""The append-only audit log: who did what, when, from where.

The API only ever inserts audit events; there is no route that updates or deletes one.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from datasite.db.models import AuditEvent, User

#: A plain INSERT, not a unit-of-work flush: events are never read back in the
#: transaction that writes them, and approval writes two of them on its hot path.
_INSERT = insert(AuditEvent.__table__)


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
) -> int:
    """Insert an audit event in the current transaction; returns its id, which ledger
    entries link to."""
    if actor_email is None:
        actor_email = actor.email if actor else ""
    inserted = db.execute(
        _INSERT,
        {
            "action": action,
            "actor_id": actor.id if actor else None,
            "actor_email": actor_email,
            "address": address,
            "target_type": target_type,
            "target_id": str(target_id),
            "detail": detail,
        },
    )
    return inserted.inserted_primary_key[0]
