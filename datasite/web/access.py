"""Who is looking at a page: the signed-in user, their role, and CSRF-checked forms.

The role rules are the API's (``datasite.api.deps``, with ``STAFF`` from
``datasite.accounts``): review pages for owners and reviewers, overrides, policy edits
and the audit log for owners only. A researcher who signs in gets a 403 page on every
review page. Form posts pass ``posted_by``, which refuses a missing or wrong CSRF token
before the route does anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from fastapi import Depends, Form, Request
from sqlalchemy.orm import Session

from datasite.accounts import STAFF
from datasite.api.deps import db_session
from datasite.auth.tokens import user_for_token
from datasite.db.models import User
from datasite.web.session import CSRF_FIELD, csrf_ok, csrf_token, session_token_of

OWNER = ("owner",)


class LoginRequired(Exception):
    """No live session: the page handler sends the browser to the sign-in page."""

    def __init__(self, next_path: str, reason: str = "") -> None:
        super().__init__(reason)
        self.next_path = next_path
        self.reason = reason


class PageError(Exception):
    """A refusal shown as a page: 403 for a role, 404 for a missing record, and so on."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


@dataclass
class WebSession:
    user: User
    token: str
    csrf: str


def secret_of(request: Request) -> bytes:
    return request.app.state.web_secret


def login_url(next_path: str) -> str:
    return f"/login?next={quote(next_path, safe='/')}"


def current_session(request: Request, db: Session = Depends(db_session)) -> WebSession:
    """The signed-in user behind the session cookie, or ``LoginRequired``."""
    token = session_token_of(request)
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if not token:
        raise LoginRequired(path)
    user, reason = user_for_token(db, token)
    if user is None:
        raise LoginRequired(path, reason)
    # End the read transaction now: on SQLite every transaction takes the write lock
    # (BEGIN IMMEDIATE), and the reviewer's own session must be able to write while
    # this request is still being handled.
    db.commit()
    return WebSession(user=user, token=token, csrf=csrf_token(secret_of(request), token))


def _refuse(user: User, roles: tuple[str, ...]) -> PageError:
    who = " or ".join(f"{r}s" for r in roles)
    return PageError(
        403,
        "Not for your account",
        f"This page is for {who} of the datasite; you are signed in as a {user.role}. "
        + (
            "Researchers work from their notebook with researcher_kit."
            if user.role == "researcher"
            else "Ask the data owner if you need it."
        ),
    )


def role(*roles: str) -> Callable[..., WebSession]:
    """A dependency admitting only sessions whose user has one of ``roles``."""

    def check(session: WebSession = Depends(current_session)) -> WebSession:
        if session.user.role not in roles:
            raise _refuse(session.user, roles)
        return session

    return check


def posted_by(*roles: str) -> Callable[..., WebSession]:
    """Like ``role`` for form posts, and the form's CSRF token must match the session."""

    def check(
        request: Request,
        csrf_token: str = Form("", alias=CSRF_FIELD),
        session: WebSession = Depends(current_session),
    ) -> WebSession:
        if not csrf_ok(secret_of(request), session.token, csrf_token):
            raise PageError(
                403,
                "Form expired",
                "This form was not sent from a page of this datasite (its security token is "
                "missing or wrong), so nothing was changed. Reload the page and try again.",
            )
        if session.user.role not in roles:
            raise _refuse(session.user, roles)
        return session

    return check


staff_page = role(*STAFF)
owner_page = role(*OWNER)
staff_post = posted_by(*STAFF)
owner_post = posted_by(*OWNER)
