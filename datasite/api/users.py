"""Accounts, managed by the owner (the work is ``datasite.accounts``'s)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session

from datasite import accounts
from datasite.api.auth import user_out
from datasite.api.deps import client_address, db_session, owner_only
from datasite.contract.schemas import UserCreate, UserCreated, UserOut, UserUpdate
from datasite.db.models import User

router = APIRouter(prefix="/users", tags=["users"])


@router.get("", response_model=list[UserOut])
def list_users(_: User = Depends(owner_only), db: Session = Depends(db_session)) -> list[UserOut]:
    return [user_out(u) for u in accounts.list_users(db)]


@router.post("", response_model=UserCreated, status_code=201)
def create_user(
    body: UserCreate,
    request: Request,
    owner: User = Depends(owner_only),
    db: Session = Depends(db_session),
) -> UserCreated:
    user, generated = accounts.create_user(db, body, owner=owner, address=client_address(request))
    return UserCreated(**user_out(user).model_dump(), generated_password=generated)


@router.patch("/{email}", response_model=UserOut)
def update_user(
    email: str,
    body: UserUpdate,
    request: Request,
    owner: User = Depends(owner_only),
    db: Session = Depends(db_session),
) -> UserOut:
    user = accounts.update_user(db, email, body, owner=owner, address=client_address(request))
    return user_out(user)
