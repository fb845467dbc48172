"""Opaque bearer tokens that expire; the database keeps only their SHA-256."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from datasite.db.models import SessionToken, User
from datasite.db.statements import USER_FOR_TOKEN


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(db: Session, user: User, ttl_seconds: int) -> tuple[str, datetime]:
    """A new token for ``user`` and its expiry; the caller commits."""
    token = secrets.token_urlsafe(32)
    expires = datetime.now(UTC) + timedelta(seconds=ttl_seconds)
    db.add(SessionToken(token_hash=_digest(token), user_id=user.id, expires_at=expires))
    return token, expires


def user_for_token(db: Session, token: str) -> tuple[User | None, str]:
    """The live, enabled user behind ``token``, or None with the reason."""
    row = db.execute(USER_FOR_TOKEN, {"token_hash": _digest(token)}).first()
    if row is not None and row.User.disabled:  # its tokens were revoked with it
        return None, "This account is disabled. Ask the data owner."
    if row is None or row.revoked:
        return None, "Your session token is not valid. Log in again."
    user, expires = row.User, row.expires_at
    expires = expires if expires.tzinfo else expires.replace(tzinfo=UTC)
    if expires <= datetime.now(UTC):
        return None, "Your session has expired. Log in again."
    return user, ""


def revoke_token(db: Session, token: str) -> None:
    row = db.scalar(select(SessionToken).where(SessionToken.token_hash == _digest(token)))
    if row is not None:
        row.revoked = True


def revoke_all_tokens(db: Session, user_id: int) -> int:
    """Revoke every token of a user (API and web sessions); the caller commits.

    Disabling an account does this, so enabling it again never revives a token issued
    before: whoever held one must log in again. Returns how many were live.
    """
    revoked = db.execute(
        update(SessionToken)
        .where(SessionToken.user_id == user_id, SessionToken.revoked.is_(False))
        .values(revoked=True)
    )
    return revoked.rowcount
