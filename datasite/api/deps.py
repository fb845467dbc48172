"""Dependencies every route shares: the database session, the caller and their role."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from datasite.auth.tokens import user_for_token
from datasite.db.models import User
from datasite.site import Site

_bearer = HTTPBearer(auto_error=False)


def site(request: Request) -> Site:
    return request.app.state.site


def db_session(request: Request) -> Iterator[Session]:
    with request.app.state.site.sessions() as db:
        yield db


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""


def current_user(
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
    db: Session = Depends(db_session),
) -> User:
    if credentials is None:
        raise HTTPException(401, "Log in first: this route needs a bearer token.")
    user, reason = user_for_token(db, credentials.credentials)
    if user is None:
        raise HTTPException(401, reason)
    # End the read transaction: on SQLite every transaction holds the write lock
    # (BEGIN IMMEDIATE), and the reviewer's and runner's own sessions must be able to
    # write while this request is handled. The user stays loaded (expire_on_commit=False).
    db.commit()
    return user


def require(*roles: str) -> Callable[..., User]:
    """A dependency that lets only ``roles`` through, with a message naming them."""

    def check(user: User = Depends(current_user)) -> User:
        if user.role not in roles:
            raise HTTPException(
                403, f"Only {' or '.join(roles)} accounts may do this; you are a {user.role}."
            )
        return user

    return check


staff = require("owner", "reviewer")
owner_only = require("owner")
