"""The review pages, served by the datasite itself: ``install(app)`` adds them.

Server-rendered HTML (Jinja2), one stylesheet, no JavaScript. Pages:

- ``/login``, ``/logout``; ``/`` goes to the queue
- ``/queue``: requests waiting for a check or a decision, filterable by state and dataset
- ``/requests/{id}``: code with findings at their lines, budget, dry-run outputs, runs,
  history; approve, deny with a reason, owner override with a justification
- ``/ledger``: budgets and spends; ``/audit``: the audit log (owner)
- ``/datasets``, ``/datasets/{name}``: assets, schema, mock preview, policy form (owner edits)

>>> import tempfile, pathlib
>>> from datasite.app import create_app
>>> from datasite.config import Settings
>>> app = create_app(Settings(data_dir=pathlib.Path(tempfile.mkdtemp()), dev_mode=True))
>>> app.url_path_for("queue"), app.url_path_for("show_request", request_id=3)
('/queue', '/requests/3')
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from datasite.auth.tokens import user_for_token
from datasite.web import auth_pages, dataset_pages, records_pages, review_pages
from datasite.web.access import LoginRequired, PageError, login_url
from datasite.web.highlight import pygments_css
from datasite.web.render import STATIC, render
from datasite.web.session import SESSION_COOKIE, clear_cookie, csrf_token, load_secret


def _error_page(request: Request, exc: PageError) -> HTMLResponse:
    """The refusal as a page, with the navigation of whoever is signed in."""
    site = request.app.state.site
    token = request.cookies.get(SESSION_COOKIE, "")
    user = None
    if token:
        with site.sessions() as db:
            user = user_for_token(db, token)[0]
    return render(
        request,
        "error.html",
        {"title": exc.title, "message": exc.message, "back": "/queue"},
        user=user,
        csrf=csrf_token(request.app.state.web_secret, token) if user else "",
        status=exc.status,
    )


def install(app: FastAPI) -> None:
    """Add the review pages, their static files and their error pages to ``app``."""
    settings = app.state.site.settings
    app.state.web_secret = load_secret(settings.data_dir, settings.secret_key)

    @app.get("/static/code.css", include_in_schema=False)
    def code_css() -> Response:
        return Response(pygments_css(), media_type="text/css")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for module in (auth_pages, review_pages, records_pages, dataset_pages):
        app.include_router(module.router)

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, exc: LoginRequired) -> Response:
        target = login_url(exc.next_path) + ("&ended=1" if exc.reason else "")
        response = RedirectResponse(target, status_code=303)
        if exc.reason:
            clear_cookie(request, response, SESSION_COOKIE)
        return response

    @app.exception_handler(PageError)
    async def _page_error(request: Request, exc: PageError) -> Response:
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(_error_page, request, exc)
