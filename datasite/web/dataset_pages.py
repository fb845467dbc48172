"""Dataset pages: assets, schema, a mock preview, and the owner's policy form.

The preview reads only the asset's ``mock_path`` file, never the real table. The policy
form is generated from the policy model's schema (``datasite.web.policy_form``) and set
with ``datasite.policy_settings.set_policy``, the service the API uses (pending requests
are re-checked). Datasets are found with ``datasite.datasets``, like the API finds them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pyarrow.parquet as pq
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from datasite import policy_store
from datasite.api.deps import client_address, db_session
from datasite.datasets import find_dataset, synthetic_tables
from datasite.db.models import Asset, Dataset
from datasite.errors import Invalid, NotFound
from datasite.policy_settings import set_policy
from datasite.store.storage import Storage
from datasite.web import text_pages as _text_pages
from datasite.web.access import PageError, WebSession, owner_page, owner_post, staff_page
from datasite.web.policy_form import form_fields, form_intro, parse_form, with_values
from datasite.web.render import render
from datasite.web.session import CSRF_FIELD
from policies.schema import Policy

router = APIRouter(include_in_schema=False)
PREVIEW_ROWS = 20


def mock_preview(store: Storage, asset: Asset, rows: int = PREVIEW_ROWS) -> dict[str, Any]:
    """The first ``rows`` rows of the asset's mock table, as strings for display."""
    if not store.exists(asset.mock_path):
        return {"columns": [], "rows": [], "problem": "The mock file is missing."}
    batch = next(pq.ParquetFile(store.path(asset.mock_path)).iter_batches(batch_size=rows), None)
    if batch is None:
        return {"columns": [], "rows": [], "problem": "The mock table is empty."}
    table = batch.to_pydict()
    columns = list(table)
    count = min(batch.num_rows, rows)
    return {
        "columns": columns,
        "rows": [
            ["" if table[c][i] is None else str(table[c][i]) for c in columns] for i in range(count)
        ],
        "problem": "",
    }


def _dataset(db: Session, name: str) -> Dataset:
    """The dataset (staff see archived ones too), or the "No such dataset" page."""
    try:
        return find_dataset(db, name)
    except NotFound as exc:
        raise PageError(NotFound.status, "No such dataset", str(exc)) from None


@router.get("/datasets", response_class=HTMLResponse)
def datasets_page(
    request: Request,
    session: WebSession = Depends(staff_page),
    db: Session = Depends(db_session),
) -> HTMLResponse:
    return render(
        request,
        "datasets.html",
        {
            "title": "Datasets",
            "nav": "datasets",
            "datasets": list(db.scalars(select(Dataset).order_by(Dataset.name))),
        },
        user=session.user,
        csrf=session.csrf,
    )


def dataset_page(
    request: Request,
    db: Session,
    session: WebSession,
    name: str,
    *,
    posted: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> HTMLResponse:
    dataset = _dataset(db, name)
    policy = policy_store.dataset_policy(db, dataset.id)
    fields = form_fields(Policy, policy.model_dump(mode="json"))
    if posted is not None:
        fields = with_values(fields, posted, errors or {})
    store = request.app.state.site.store
    return render(
        request,
        "dataset.html",
        {
            "title": f"Dataset {dataset.name}",
            "nav": "datasets",
            "dataset": dataset,
            "previews": {a.id: mock_preview(store, a) for a in dataset.assets},
            "fields": fields,
            "policy_intro": form_intro(Policy),
            "policy_version": policy.version,
            "form_error": (errors or {}).get(""),
            "has_errors": bool(errors),
            "saved": request.query_params.get("saved") == "1" and posted is None,
            "synthetic": _synthetic_assets(db, dataset, session),
            "anonymity": _mock_anonymity(store, dataset, policy),
        },
        user=session.user,
        csrf=session.csrf,
        status=status,
    )


def _mock_anonymity(store: Storage, dataset: Dataset, policy: Policy) -> dict[int, str]:
    """Per asset, one line on the mock's k on the policy's QIs (the mock is public)."""
    import pandas as pd

    from datasite.anonymity import check_anonymity, declared_qis

    lines = {}
    for asset in dataset.assets:
        qis = declared_qis(policy, [c["name"] for c in asset.columns])
        if qis and store.exists(asset.mock_path):
            mock = pd.read_parquet(store.path(asset.mock_path), columns=qis)
            lines[asset.id] = check_anonymity(mock, qis, k=policy.min_group_size).summary()
    return lines


def _synthetic_assets(db: Session, dataset: Dataset, session: WebSession) -> set[str]:
    """The assets whose mock the site synthesized (shown to the owner, with the report)."""
    if session.user.role != "owner":
        return set()
    from datasite.synthetic_mock import released_settings

    found = set()
    for asset in dataset.assets:
        try:
            found.add(released_settings(db, dataset.name, asset.name)[0])
        except LookupError:
            pass
    return found


@router.get("/datasets/{name}/synthetic-report", response_class=HTMLResponse)
def synthetic_report_page(
    request: Request,
    name: str,
    asset: str | None = None,
    session: WebSession = Depends(owner_page),
    db: Session = Depends(db_session),
) -> HTMLResponse:
    """The quality report of a synthetic mock (owner only: it reads the real table)."""
    from datasite.synthetic_mock import report

    dataset = _dataset(db, name)
    try:
        asset_name, real, mock, settings = synthetic_tables(
            db, dataset, asset, request.app.state.site.store
        )
    except NotFound as exc:
        raise PageError(NotFound.status, "No synthetic mock", str(exc)) from None
    return render(
        request,
        "synthetic_report.html",
        {
            "title": f"Synthetic mock report: {dataset.name}",
            "nav": "datasets",
            "dataset": dataset,
            "asset": asset_name,
            "report": report(real, mock, settings),
        },
        user=session.user,
        csrf=session.csrf,
    )


@router.get("/datasets/{name}", response_class=HTMLResponse)
def show_dataset(
    request: Request,
    name: str,
    session: WebSession = Depends(staff_page),
    db: Session = Depends(db_session),
) -> HTMLResponse:
    return dataset_page(request, db, session, name)


@router.post("/datasets/{name}/policy")
async def save_policy(
    request: Request,
    name: str,
    session: WebSession = Depends(owner_post),
) -> Response:
    """Validate the posted policy; errors go back next to their fields, nothing saved."""
    form = await request.form()
    posted = {k: v for k, v in form.items() if isinstance(v, str) and k != CSRF_FIELD}
    return await run_in_threadpool(_save_policy, request, name, session, posted)


def _save_policy(
    request: Request, name: str, session: WebSession, posted: dict[str, str]
) -> Response:
    the_site = request.app.state.site
    with the_site.sessions() as db:
        document, errors = parse_form(Policy, posted)
        if errors:
            return dataset_page(
                request, db, session, name, posted=posted, errors=errors, status=422
            )
        dataset = _dataset(db, name)
        try:  # the stored mock must meet the policy's k-anonymity (datasite.anonymity)
            set_policy(
                db, dataset, document, actor=session.user, address=client_address(request),
                store=the_site.store, reviewer=the_site.reviewer, channel="web",
            )  # fmt: skip
        except Invalid as exc:
            return dataset_page(
                request, db, session, name, posted=posted, errors={"": str(exc)}, status=422
            )
    return RedirectResponse(f"/datasets/{quote(name)}?saved=1#policy-heading", status_code=303)


# The owner's text-privatization report of a text column (datasite.web.text_pages).
router.include_router(_text_pages.router)
