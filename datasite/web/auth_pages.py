"""Signing in and out of the review pages.

A web login is an API login with the token kept in an HttpOnly cookie: same password
check, same token table, same audit events (``login``, ``login_failed``, ``logout``),
tagged ``channel="web"``.
"""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from datasite import audit_log
from datasite.api.auth import BAD_LOGIN
from datasite.api.deps import client_address, db_session
from datasite.auth.passwords import verify_password
from datasite.auth.tokens import issue_token, revoke_token, user_for_token
from datasite.db.models import User
from datasite.web.access import PageError, WebSession, posted_by, secret_of
from datasite.web.render import render
from datasite.web.session import (
    CSRF_FIELD,
    LOGIN_NONCE_COOKIE,
    LOGIN_NONCE_SECONDS,
    SESSION_COOKIE,
    clear_cookie,
    csrf_token,
    login_csrf_ok,
    login_csrf_token,
    session_token_of,
    set_cookie,
)

router = APIRouter(include_in_schema=False)
ANY_ROLE = ("owner", "reviewer", "researcher")
SESSION_ENDED = "Your session has ended (it expired or was signed out). Sign in again."


def safe_next(path: str) -> str:
    """Only a path on this site: never ``//evil.example`` or ``https://...``.

    >>> safe_next("/requests/3"), safe_next("//evil.example/x"), safe_next("https://x.example")
    ('/requests/3', '/queue', '/queue')
    """
    if path.startswith("/") and not path.startswith("//") and "\\" not in path:
        return path
    return "/queue"


def _login_page(
    request: Request, next_path: str, *, email: str = "", error: str = "", status: int = 200
) -> HTMLResponse:
    nonce = secrets.token_urlsafe(24)
    response = render(
        request,
        "login.html",
        {
            "title": "Sign in",
            "login_csrf": login_csrf_token(secret_of(request), nonce),
            "next_path": safe_next(next_path),
            "email": email,
            "error": error,
            "notice": SESSION_ENDED if request.query_params.get("ended") else "",
        },
        status=status,
    )
    set_cookie(request, response, LOGIN_NONCE_COOKIE, nonce, LOGIN_NONCE_SECONDS)
    return response


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/queue", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/queue") -> HTMLResponse:
    return _login_page(request, next)


@router.post("/login")
def login(
    request: Request,
    email: str = Form("", max_length=320),
    password: str = Form("", max_length=500),
    next: str = Form("/queue", max_length=2000),
    submitted_csrf: str = Form("", alias=CSRF_FIELD, max_length=200),
    db: Session = Depends(db_session),
) -> Response:
    the_site = request.app.state.site
    if not login_csrf_ok(
        secret_of(request), request.cookies.get(LOGIN_NONCE_COOKIE, ""), submitted_csrf
    ):
        raise PageError(
            403,
            "Form expired",
            "This sign-in form was not sent from this datasite's sign-in page, or it is too "
            "old; nothing was done. Open the sign-in page again.",
        )
    email = email.strip().lower()
    user = db.scalar(select(User).where(User.email == email))
    ok = verify_password(user.password_hash if user else None, password)
    address = client_address(request)
    if not ok or user is None or user.disabled:
        audit_log.record(
            db, "login_failed", actor=None, actor_email=email, address=address, channel="web"
        )
        db.commit()
        return _login_page(request, next, email=email, error=BAD_LOGIN, status=401)
    previous = session_token_of(request)
    if previous:  # signing in again replaces this browser's session, it does not add one
        revoke_token(db, previous)
    token, _expires = issue_token(db, user, the_site.settings.token_ttl_seconds)
    audit_log.record(db, "login", actor=user, address=address, channel="web")
    db.commit()
    response = RedirectResponse(safe_next(next), status_code=303)
    set_cookie(request, response, SESSION_COOKIE, token, the_site.settings.token_ttl_seconds)
    clear_cookie(request, response, LOGIN_NONCE_COOKIE)
    return response


@router.get("/logout", response_class=HTMLResponse)
def logout_form(request: Request, db: Session = Depends(db_session)) -> Response:
    """A confirmation page: signing out is a POST, so another site cannot force it."""
    token = session_token_of(request)
    user = user_for_token(db, token)[0] if token else None
    if user is None:
        return RedirectResponse("/login", status_code=303)
    return render(
        request,
        "logout.html",
        {"title": "Sign out"},
        user=user,
        csrf=csrf_token(secret_of(request), token),
    )


@router.post("/logout")
def logout(
    request: Request,
    session: WebSession = Depends(posted_by(*ANY_ROLE)),
    db: Session = Depends(db_session),
) -> RedirectResponse:
    revoke_token(db, session.token)
    address = client_address(request)
    audit_log.record(db, "logout", actor=session.user, address=address, channel="web")
    db.commit()
    response = RedirectResponse("/login", status_code=303)
    clear_cookie(request, response, SESSION_COOKIE)
    return response
