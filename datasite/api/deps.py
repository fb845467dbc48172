"""Dependencies every route shares: the database session, the caller and their role.

FastAPI runs each plain ``def`` dependency in its thread pool, one thread hop per
dependency per call; on a small machine a hop costs about as much as the query it wraps.
So what does no I/O is ``async`` here, and the one dependency that queries (the caller's
token) makes a single hop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated, TypeVar

from fastapi import Depends, HTTPException, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from datasite.accounts import STAFF
from datasite.auth.tokens import user_for_token
from datasite.db.models import User
from datasite.errors import Forbidden
from datasite.site import Site

_bearer = HTTPBearer(auto_error=False)
T = TypeVar("T")

#: The largest id a database integer column holds (SQLite and PostgreSQL ``BIGINT``).
MAX_ID = 2**63 - 1

#: Every integer id in a path: a number the database can hold, so a huge one is a clear
#: 422 ("less than or equal to ...") instead of the driver's overflow (a 500).
Id = Annotated[int, Path(ge=1, le=MAX_ID, description="A positive whole number (an id).")]


async def site(request: Request) -> Site:
    return request.app.state.site


async def db_session(request: Request) -> AsyncIterator[Session]:
    """The route's session. Opening one does no I/O (it connects at its first query),
    and closing one whose transaction has ended only drops Python objects; a session
    left inside a transaction (a route that failed) rolls back in the thread pool."""
    db = request.app.state.site.new_session()
    try:
        yield db
    finally:
        if db.in_transaction():
            await run_in_threadpool(db.close)
        else:
            db.close()


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""


def _authenticate(db: Session, token: str) -> User:
    user, reason = user_for_token(db, token)
    if user is None:
        raise HTTPException(401, reason)
    return user


def _authenticate_and_release(db: Session, token: str) -> User:
    user = _authenticate(db, token)
    # End the read transaction: on SQLite every transaction holds the write lock
    # (BEGIN IMMEDIATE), and the reviewer's and runner's own sessions must be able to
    # write while this request is handled. The user stays loaded (expire_on_commit=False).
    db.commit()
    return user


def _check_role(user: User, roles: tuple[str, ...]) -> None:
    if roles and user.role not in roles:
        raise Forbidden(f"Only {' or '.join(roles)} accounts may do this; you are a {user.role}.")


def _token(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None:
        raise HTTPException(401, "Log in first: this route needs a bearer token.")
    return credentials.credentials


async def current_user(
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
    db: Session = Depends(db_session),
) -> User:
    return await run_in_threadpool(_authenticate_and_release, db, _token(credentials))


class Caller:
    """A call's bearer token, authenticated in the same thread-pool hop as the route's work.

    A plain ``def`` route with ``Depends(current_user)`` makes three hops: the token, the
    route, and FastAPI's check of the response. The calls a notebook makes in a loop
    (fetching a result) and the one a reviewer clicks (approving) are ``async`` routes
    that make one, through :meth:`run`.
    """

    def __init__(self, site: Site, token: str) -> None:
        self.site = site
        self.token = token

    async def run(self, work: Callable[[Session, User], T], roles: tuple[str, ...] = ()) -> T:
        """``work(db, user)`` in the thread pool, once the caller proved who they are and
        holds one of ``roles`` (any role when empty). The token is read in ``work``'s
        own transaction, which ``work`` commits if it writes."""

        def hop() -> T:
            with self.site.sessions() as db:
                user = _authenticate(db, self.token)
                _check_role(user, roles)
                return work(db, user)

        return await run_in_threadpool(hop)


async def caller(
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
    the_site: Site = Depends(site),
) -> Caller:
    return Caller(the_site, _token(credentials))


def require(*roles: str) -> Callable[..., User]:
    """A dependency that lets only ``roles`` through, with a message naming them."""

    async def check(user: User = Depends(current_user)) -> User:
        _check_role(user, roles)
        return user

    return check


staff = require(*STAFF)
owner_only = require("owner")
