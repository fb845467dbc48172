"""Accounts, managed by the owner."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from datasite import audit_log
from datasite.api.auth import user_out
from datasite.api.deps import client_address, db_session, owner_only
from datasite.auth.passwords import generate_password, hash_password
from datasite.auth.tokens import revoke_all_tokens
from datasite.contract.schemas import UserCreate, UserCreated, UserOut, UserUpdate
from datasite.db.models import User
from datasite.errors import Conflict, Invalid, NotFound

router = APIRouter(prefix="/users", tags=["users"])


def find_user(db: Session, email: str) -> User:
    user = db.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise NotFound(f"There is no account {email!r}.")
    return user


@router.get("", response_model=list[UserOut])
def list_users(_: User = Depends(owner_only), db: Session = Depends(db_session)) -> list[UserOut]:
    return [user_out(u) for u in db.scalars(select(User).order_by(User.id))]


@router.post("", response_model=UserCreated, status_code=201)
def create_user(
    body: UserCreate,
    request: Request,
    owner: User = Depends(owner_only),
    db: Session = Depends(db_session),
) -> UserCreated:
    if db.scalar(select(User.id).where(User.email == body.email)) is not None:
        raise Conflict(f"An account {body.email!r} exists already.")
    generated = None if body.password else generate_password()
    user = User(
        email=body.email,
        name=body.name,
        role=body.role,
        password_hash=hash_password(body.password or generated),
        institution=body.institution,
        website=body.website,
    )
    db.add(user)
    db.flush()
    audit_log.record(
        db,
        "user_created",
        actor=owner,
        address=client_address(request),
        target_type="user",
        target_id=user.email,
        role=user.role,
    )
    db.commit()
    return UserCreated(**user_out(user).model_dump(), generated_password=generated)


@router.patch("/{email}", response_model=UserOut)
def update_user(
    email: str,
    body: UserUpdate,
    request: Request,
    owner: User = Depends(owner_only),
    db: Session = Depends(db_session),
) -> UserOut:
    user = find_user(db, email)
    if user.id == owner.id:
        raise Conflict("You cannot disable or demote your own account.")
    changes = body.model_dump(exclude_none=True)
    if not changes:
        raise Invalid("Invalid request: give 'disabled' or 'role' to change.")
    for field, value in changes.items():
        setattr(user, field, value)
    if changes.get("disabled"):  # re-enabling later must not revive these sessions
        revoke_all_tokens(db, user.id)
    audit_log.record(
        db,
        "user_updated",
        actor=owner,
        address=client_address(request),
        target_type="user",
        target_id=user.email,
        **changes,
    )
    db.commit()
    return user_out(user)
