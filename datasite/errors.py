"""The refusals of the datasite's services, one family with the HTTP status of each.

A service raises one of these with the sentence the person reads; the API
(``datasite.api.errors``) and the web pages turn it into an answer in one place, by the
class's ``status``. A bug (a ``KeyError`` inside approve) is none of these, so it is a
server error and never passes for "not found".

>>> NotFound("There is no code request 7.").status
404
>>> isinstance(BudgetError("no budget left"), Conflict)
True
"""

from __future__ import annotations


def describe_validation(errors: list) -> str:
    """Pydantic's error list as one sentence a person can act on.

    >>> describe_validation([{"loc": ("body", "epsilon"), "msg": "Value error, too big"}])
    'epsilon: too big'
    """
    return "; ".join(_describe(e) for e in errors)


def _describe(error: dict) -> str:
    where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
    if error.get("type") == "json_invalid":
        return f"the body is not valid JSON ({error.get('ctx', {}).get('error', 'parse error')})"
    message = error.get("msg", "invalid").removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


class DomainError(Exception):
    """A refusal a person can act on; ``str(error)`` is the message they see."""

    status = 400
    title = "Refused"


class NotFound(DomainError):
    """No such record (or none the caller may see)."""

    status = 404
    title = "No such record"


class Forbidden(DomainError):
    """The caller may not do this: a role, their own request, an override without reason."""

    status = 403
    title = "Not allowed"


class Conflict(DomainError):
    """The records' state does not allow it now: a duplicate, a decided request."""

    status = 409
    title = "Not possible now"


class Invalid(DomainError):
    """The input is well-formed but not acceptable."""

    status = 422
    title = "Invalid request"


class BudgetError(Conflict):
    """The request would spend more than the researcher has left."""


class UploadError(DomainError):
    """The uploaded bytes are not acceptable (not Parquet, unknown id)."""

    status = 400
    title = "Upload refused"


class UploadTooLarge(UploadError):
    """The upload is over the site's size limit."""

    status = 413


class StorageFailed(DomainError):
    """The site could not write a table (a full disk, a storage outage); nothing was kept."""

    status = 503
    title = "Storage failed"
