"""The FastAPI application: the JSON API under ``/api/v1`` and the review pages under ``/``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from datasite.api import audit, auth, budgets, datasets, errors, policies, projects, requests, users
from datasite.config import Settings
from datasite.site import Site
from datasite.web import pages

if TYPE_CHECKING:
    from datasite.execution.executor import Executor as JobExecutor


def create_app(settings: Settings, executor: JobExecutor | None = None) -> FastAPI:
    """The datasite's ASGI app; the ``Site`` starts with the app and closes with it.

    ``executor`` runs the jobs instead of the one ``settings`` names (a test's).

    >>> import tempfile, pathlib
    >>> app = create_app(Settings(data_dir=pathlib.Path(tempfile.mkdtemp()), dev_mode=True))
    >>> app.title
    'DP datasite'
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        app.state.site.close()

    app = FastAPI(
        title="DP datasite",
        description="Remote execution with code review for differential privacy.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's own pages load Swagger UI from a CDN: blank offline
        redoc_url=None,
    )
    app.state.site = Site(settings, executor=executor)
    errors.install(app)
    install_docs(app)

    @app.get("/api/v1/health", tags=["health"])
    def health() -> dict[str, str]:
        return {"status": "ok"}

    for module in (auth, users, datasets, policies, projects, requests, budgets, audit):
        app.include_router(module.router, prefix="/api/v1")
    pages.install(app)
    return app


#: Where the interactive API docs load Swagger UI from: this server, never a CDN.
DOCS_ASSETS = "/docs-assets"


def install_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI served from the installed ``fastapi-offline`` package, so
    the page works on a machine without internet access."""
    app.mount(
        DOCS_ASSETS,
        StaticFiles(directory=str(files("fastapi_offline") / "static")),
        name="docs-assets",
    )
    redirect = "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - API",
            oauth2_redirect_url=redirect,
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
        )

    @app.get(redirect, include_in_schema=False)
    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
