"""The ledger (budgets and every spend) and the audit log, as read-only pages.

The budgets, what is left of them and the ledger's entries are ``datasite.budgets``'s,
the same the API lists.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from datasite import budgets
from datasite.api.deps import db_session
from datasite.db.models import AuditEvent, Dataset, User
from datasite.web.access import WebSession, owner_page, staff_page
from datasite.web.charts import budget_over_time, line_chart
from datasite.web.render import render

router = APIRouter(include_in_schema=False)
AUDIT_PAGE = 100
#: Most ledger entries the ledger page lists (the newest first).
ENTRIES = 500
#: Most ledger entries the budget charts read (the oldest first).
CHART_ENTRIES = 5000


@router.get("/ledger", response_class=HTMLResponse)
def ledger_page(
    request: Request,
    researcher: str = Query("", max_length=320),
    dataset: str = Query("", max_length=200),
    session: WebSession = Depends(staff_page),
    db: Session = Depends(db_session),
) -> HTMLResponse:
    filters = {"researcher": researcher, "dataset": dataset}
    grants = budgets.list_grants(db, session.user, by_name=True, **filters)
    spends = budgets.epsilon_spends(db, session.user, limit=CHART_ENTRIES, **filters)
    ceiling = grants[0].epsilon if len(grants) == 1 else None  # one budget: draw its line
    return render(
        request,
        "ledger.html",
        {
            "title": "Privacy ledger",
            "nav": "ledger",
            "grants": grants,
            "remaining": budgets.remaining,
            "entries": budgets.list_ledger(
                db, session.user, newest_first=True, limit=ENTRIES, **filters
            ),
            "by_researcher": line_chart(
                budget_over_time((when, email, eps) for when, email, _, eps in spends),
                title="Epsilon spent over time, per researcher",
                ceiling=ceiling,
            ),
            "by_dataset": line_chart(
                budget_over_time((when, name, eps) for when, _, name, eps in spends),
                title="Epsilon spent over time, per dataset",
                ceiling=ceiling,
            ),
            "researcher": researcher,
            "dataset": dataset,
            "researchers": list(
                db.scalars(select(User.email).where(User.role == "researcher").order_by(User.email))
            ),
            "datasets": list(db.scalars(select(Dataset.name).order_by(Dataset.name))),
        },
        user=session.user,
        csrf=session.csrf,
    )


@router.get("/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    action: str = Query("", max_length=64),
    actor: str = Query("", max_length=320),
    offset: int = Query(0, ge=0),
    session: WebSession = Depends(owner_page),
    db: Session = Depends(db_session),
) -> HTMLResponse:
    query = select(AuditEvent).order_by(AuditEvent.id.desc())
    if action:
        query = query.where(AuditEvent.action == action)
    if actor:
        query = query.where(AuditEvent.actor_email == actor.strip().lower())
    events = list(db.scalars(query.limit(AUDIT_PAGE + 1).offset(offset)))
    return render(
        request,
        "audit.html",
        {
            "title": "Audit log",
            "nav": "audit",
            "events": events[:AUDIT_PAGE],
            "more": len(events) > AUDIT_PAGE,
            "offset": offset,
            "page_size": AUDIT_PAGE,
            "action": action,
            "actor": actor,
            "actions": list(
                db.scalars(select(AuditEvent.action).distinct().order_by(AuditEvent.action))
            ),
        },
        user=session.user,
        csrf=session.csrf,
    )
