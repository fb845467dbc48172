"""Error responses a person can act on: always ``{"detail": "<sentence>"}``.

The one place where a service's refusal becomes an HTTP status: a ``DomainError``
answers with its class's ``status``, a ``TransitionError`` (the lifecycle's, in the
contract) as a conflict. The web pages render their refusals with ``status_of`` too.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import IntegrityError

from datasite.contract.lifecycle import TransitionError
from datasite.errors import Conflict, DomainError, Invalid, NotFound, describe_validation

#: Every refusal a service raises for a person to read.
REFUSALS = (DomainError, TransitionError)


def status_of(exc: DomainError | TransitionError) -> int:
    """The HTTP status of a service's refusal.

    >>> from datasite.errors import NotFound, UploadTooLarge
    >>> status_of(NotFound("gone")), status_of(UploadTooLarge("big")), status_of(TransitionError())
    (404, 413, 409)
    """
    return exc.status if isinstance(exc, DomainError) else Conflict.status


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = describe_validation(exc.errors())
        return JSONResponse({"detail": f"Invalid request: {problems}."}, status_code=422)

    async def answer(request: Request, status: int, title: str, message: str) -> Response:
        """``{"detail": message}`` for the API; the error page for the web pages."""
        if not request.url.path.startswith("/api/"):
            from datasite.web.access import PageError

            handler = app.exception_handlers.get(PageError)
            if handler is not None:
                return await handler(request, PageError(status, title, message))
        return JSONResponse({"detail": message}, status_code=status)

    async def _refused(request: Request, exc: Exception) -> Response:
        title = exc.title if isinstance(exc, DomainError) else Conflict.title
        return await answer(request, status_of(exc), title, str(exc))  # type: ignore[arg-type]

    for refusal in REFUSALS:
        app.add_exception_handler(refusal, _refused)

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
            return await answer(request, NotFound.status, NotFound.title, message)
        return JSONResponse({"detail": message}, status_code=Invalid.status)
