"""The FastAPI application: the JSON API under ``/api/v1`` and the review pages under ``/``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from datasite.api import audit, auth, budgets, datasets, errors, policies, projects, requests, users
from datasite.config import Settings
from datasite.site import Site
from datasite.web import pages


def create_app(settings: Settings) -> FastAPI:
    """The datasite's ASGI app; the ``Site`` starts with the app and closes with it.

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
    )
    app.state.site = Site(settings)
    errors.install(app)

    @app.get("/api/v1/health", tags=["health"])
    def health() -> dict[str, str]:
        return {"status": "ok"}

    for module in (auth, users, datasets, policies, projects, requests, budgets, audit):
        app.include_router(module.router, prefix="/api/v1")
    pages.install(app)
    return app
