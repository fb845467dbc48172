"""Error responses a person can act on: always ``{"detail": "<sentence>"}``."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import IntegrityError

from datasite.contract.lifecycle import TransitionError
from datasite.ledger import BudgetError
from datasite.store.assets import UploadError


def describe_validation(errors: list) -> str:
    """Pydantic's error list as one sentence a person can act on."""
    return "; ".join(_describe(e) for e in errors)


def _describe(error: dict) -> str:
    where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
    if error.get("type") == "json_invalid":
        return f"the body is not valid JSON ({error.get('ctx', {}).get('error', 'parse error')})"
    message = error.get("msg", "invalid").removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = describe_validation(exc.errors())
        return JSONResponse({"detail": f"Invalid request: {problems}."}, status_code=422)

    @app.exception_handler(TransitionError)
    async def _transition(_request: Request, exc: TransitionError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(BudgetError)
    async def _budget(_request: Request, exc: BudgetError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(IntegrityError)
    async def _conflict(_request: Request, _exc: IntegrityError) -> JSONResponse:
        return JSONResponse(
            {
                "detail": "This conflicts with a record that was created at the same moment "
                "(a duplicate name or email); nothing was changed."
            },
            status_code=409,
        )

    @app.exception_handler(OverflowError)
    async def _overflow(request: Request, _exc: OverflowError) -> Response:
        """A number too large for the database (an id in a page's address): the API's
        routes refuse those up front (``deps.Id``); this catches any other route."""
        message = (
            f"A number in this request is too large: ids are whole numbers from 1 to {2**63 - 1}."
        )
        if not request.url.path.startswith("/api/"):
            from datasite.web.access import PageError

            handler = app.exception_handlers.get(PageError)
            if handler is not None:
                return await handler(request, PageError(404, "No such record", message))
        return JSONResponse({"detail": message}, status_code=422)

    @app.exception_handler(UploadError)
    async def _upload(_request: Request, exc: UploadError) -> JSONResponse:
        status = 413 if "limit" in str(exc) else 400
        return JSONResponse({"detail": str(exc)}, status_code=status)
