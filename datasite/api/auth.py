"""Log in and out. Errors never say whether an email exists."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy import select
from sqlalchemy.orm import Session

from datasite import audit_log
from datasite.api.deps import _bearer, client_address, current_user, db_session, site
from datasite.auth.passwords import verify_password
from datasite.auth.tokens import issue_token, revoke_token
from datasite.contract.schemas import LoginIn, LoginOut, UserOut
from datasite.db.models import User
from datasite.site import DEV_PASSWORD_WARNING, Site

router = APIRouter(prefix="/auth", tags=["auth"])
log = logging.getLogger("datasite")
BAD_LOGIN = "Wrong email or password."


def user_out(user: User) -> UserOut:
    return UserOut.model_validate(user, from_attributes=True)


@router.post("/login", response_model=LoginOut)
def login(
    body: LoginIn,
    request: Request,
    db: Session = Depends(db_session),
    the_site: Site = Depends(site),
) -> LoginOut:
    user = db.scalar(select(User).where(User.email == body.email))
    ok = verify_password(user.password_hash if user else None, body.password)
    address = client_address(request)
    if not ok or user is None or user.disabled:
        audit_log.record(db, "login_failed", actor=None, actor_email=body.email, address=address)
        db.commit()
        raise HTTPException(401, BAD_LOGIN)
    token, expires = issue_token(db, user, the_site.settings.token_ttl_seconds)
    audit_log.record(db, "login", actor=user, address=address)
    db.commit()
    warning = None
    if the_site.uses_dev_password(user, body.password):
        warning = DEV_PASSWORD_WARNING
        log.warning(DEV_PASSWORD_WARNING)
    return LoginOut(token=token, expires_at=expires, user=user_out(user), warning=warning)


@router.post("/logout", status_code=204)
def logout(
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
    user: User = Depends(current_user),
    db: Session = Depends(db_session),
) -> None:
    if credentials is not None:
        revoke_token(db, credentials.credentials)
    db.commit()


@router.get("/me", response_model=UserOut)
def me(user: User = Depends(current_user)) -> UserOut:
    return user_out(user)
