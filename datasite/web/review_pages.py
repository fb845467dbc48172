"""The review queue and the request page, where reviewers approve and deny.

Decisions go through ``site.reviewer.approve`` / ``deny``, the gate the API uses, so a
page can never do what the API would refuse (own request, blocked report without an
owner's justification, budget overrun, a request someone else decided meanwhile).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from datasite.api.deps import client_address, db_session
from datasite.api.errors import REFUSALS, status_of
from datasite.budgets import request_budget
from datasite.contract.lifecycle import PENDING, State, TransitionError
from datasite.db.models import AuditEvent, CodeRequest, Dataset
from datasite.errors import DomainError, NotFound
from datasite.web.access import PageError, WebSession, staff_page, staff_post
from datasite.web.charts import run_error_bars
from datasite.web.federated_view import federated_view
from datasite.web.highlight import highlighted_lines, place_findings
from datasite.web.render import render
from datasite.web.report_view import OUTPUT_TONES, report_view, tone_of
from datasite.web.steward import GLOSSARY, for_people, plain_summary

router = APIRouter(include_in_schema=False)

STATE_FILTERS = ["pending", "all"] + [s.value for s in State]
DONE_NOTICES = {
    "approved": "Approved. The budget is reserved and the run on the private data has started.",
    "denied": "Denied. The researcher sees your reason.",
}
MAX_TEXT = 20_000


def verdict_of(request: CodeRequest) -> str:
    return (request.policy_report or {}).get("verdict") or "not checked yet"


@router.get("/queue", response_class=HTMLResponse)
def queue(
    request: Request,
    state: str = "pending",
    dataset: str = "",
    session: WebSession = Depends(staff_page),
    db: Session = Depends(db_session),
) -> HTMLResponse:
    state = state if state in STATE_FILTERS else "pending"
    query = (
        select(CodeRequest)
        .options(joinedload(CodeRequest.author), joinedload(CodeRequest.dataset))
        .order_by(CodeRequest.created_at, CodeRequest.id)
    )
    if state == "pending":
        query = query.where(CodeRequest.state.in_([s.value for s in PENDING]))
    elif state != "all":
        query = query.where(CodeRequest.state == state)
    if dataset:
        query = query.join(Dataset, CodeRequest.dataset_id == Dataset.id).where(
            Dataset.name == dataset
        )
    rows = list(db.scalars(query.limit(500)))
    return render(
        request,
        "queue.html",
        {
            "title": "Review queue",
            "nav": "queue",
            "rows": rows,
            "verdict_of": verdict_of,
            "tone_of": tone_of,
            "state": state,
            "states": STATE_FILTERS,
            "dataset": dataset,
            "datasets": list(db.scalars(select(Dataset.name).order_by(Dataset.name))),
        },
        user=session.user,
        csrf=session.csrf,
    )


def request_page(
    request: Request,
    db: Session,
    session: WebSession,
    request_id: int,
    *,
    error: str = "",
    error_field: str = "",
    posted: dict[str, str] | None = None,
    status: int = 200,
) -> HTMLResponse:
    code_request = db.get(CodeRequest, request_id)
    if code_request is None:
        raise PageError(404, "No such request", f"There is no code request {request_id}.")
    report = code_request.policy_report
    lines = highlighted_lines(code_request.source)
    view = report_view(report)
    unplaced = place_findings(lines, view.findings)
    history = db.scalars(
        select(AuditEvent)
        .where(AuditEvent.target_type == "request", AuditEvent.target_id == str(request_id))
        .order_by(AuditEvent.id)
    )
    names = {a.id: a.name for a in code_request.dataset.assets}
    bindings = {a: names.get(i, f"asset {i}") for a, i in code_request.bindings.items()}
    return render(
        request,
        "request.html",
        {
            "title": f"Request {code_request.id}: {code_request.entry}",
            "nav": "queue",
            "req": code_request,
            "bindings": bindings,
            "summary": plain_summary(
                code_request.kind,
                code_request.source,
                report,
                code_request.epsilon,
                code_request.delta,
                bindings,
            ),
            "glossary": GLOSSARY,
            "people": for_people,
            # stdout, stderr and tracebacks of runs on the private data may hold real
            # values: the owner's to read, never a reviewer's.
            "sees_run_output": session.user.role == "owner",
            "lines": lines,
            "report": view,
            "output_tones": OUTPUT_TONES,
            "unplaced": unplaced,
            "budget": request_budget(db, code_request),
            "federated": federated_view(code_request),
            "error_bars": {run.id: run_error_bars(run.manifest) for run in code_request.runs},
            "history": list(history),
            "decidable": code_request.state == State.CHECKED.value,
            "notice": DONE_NOTICES.get(request.query_params.get("done", ""), ""),
            "error": error,
            "error_field": error_field,
            "posted": posted or {},
        },
        user=session.user,
        csrf=session.csrf,
        status=status,
    )


@router.get("/requests/{request_id}", response_class=HTMLResponse)
def show_request(
    request: Request,
    request_id: int,
    session: WebSession = Depends(staff_page),
    db: Session = Depends(db_session),
) -> HTMLResponse:
    return request_page(request, db, session, request_id)


def _decided(request_id: int, done: str) -> RedirectResponse:
    return RedirectResponse(f"/requests/{request_id}?done={done}", status_code=303)


def _refused(
    request: Request,
    db: Session,
    session: WebSession,
    request_id: int,
    exc: DomainError | TransitionError,
    field: str,
    posted: dict[str, str],
) -> HTMLResponse:
    """The request page again with the gate's message; nothing changed."""
    if isinstance(exc, NotFound):
        raise PageError(NotFound.status, "No such request", str(exc))
    status = status_of(exc)
    db.expire_all()
    return request_page(
        request,
        db,
        session,
        request_id,
        error=str(exc),
        error_field=field,
        posted=posted,
        status=status,
    )


@router.post("/requests/{request_id}/approve")
def approve(
    request: Request,
    request_id: int,
    justification: str = Form("", max_length=MAX_TEXT),
    session: WebSession = Depends(staff_post),
    db: Session = Depends(db_session),
) -> Response:
    text = justification.strip() or None
    try:
        request.app.state.site.reviewer.approve(
            request_id, session.user, text, client_address(request)
        )
    except REFUSALS as exc:
        return _refused(
            request, db, session, request_id, exc, "justification", {"justification": justification}
        )
    return _decided(request_id, "approved")


@router.post("/requests/{request_id}/deny")
def deny(
    request: Request,
    request_id: int,
    reason: str = Form("", max_length=MAX_TEXT),
    session: WebSession = Depends(staff_post),
    db: Session = Depends(db_session),
) -> Response:
    if not reason.strip():
        return request_page(
            request,
            db,
            session,
            request_id,
            error="Write the reason for the denial; the researcher reads it.",
            error_field="reason",
            status=422,
        )
    try:
        request.app.state.site.reviewer.deny(
            request_id, session.user, reason.strip(), client_address(request)
        )
    except REFUSALS as exc:
        return _refused(request, db, session, request_id, exc, "reason", {"reason": reason})
    return _decided(request_id, "denied")
