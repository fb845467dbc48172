"""Datasets and their assets: finding, describing, creating, archiving and deleting them.

The routes (``datasite.api.datasets``, ``budgets``, ``policies``) and the web pages
(``datasite.web.dataset_pages``) share these functions. Each takes the database session,
the acting user and its other collaborators (the table store, the uploads folder, the
client's address) as arguments and refuses with ``datasite.errors``; the mock table is
served, the real one never is.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from datasite import audit_log
from datasite.accounts import STAFF
from datasite.contract.schemas import AssetOut, DatasetIn, DatasetOut, DatasetRemovedOut
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
from datasite.policy_settings import record_policy, validated_policy
from datasite.store.assets import describe_table, schema_mismatches, upload_path
from datasite.synthetic_mock import AUDIT_ACTION as SYNTHETIC_MOCK

if TYPE_CHECKING:
    import pandas as pd

    from datasite.contract.schemas import AssetIn, GeneraliseIn
    from datasite.generalisation import Generalised
    from datasite.store.storage import Storage
    from policies.schema import Policy

log = logging.getLogger("datasite")


def find_dataset(db: Session, name: str, viewer: User | None = None) -> Dataset:
    """The dataset named ``name``; a researcher ``viewer`` never finds an archived one.

    ``NotFound`` names the datasets the viewer may see.

    >>> from sqlalchemy import create_engine
    >>> from datasite.db.models import Base
    >>> engine = create_engine("sqlite://"); Base.metadata.create_all(engine)
    >>> db = Session(engine)
    >>> db.add(Dataset(name="Pings", created_by=1, archived_at=utcnow())); db.flush()
    >>> find_dataset(db, "Pings").name
    'Pings'
    >>> find_dataset(db, "Pings", User(role="researcher"))
    Traceback (most recent call last):
    ...
    datasite.errors.NotFound: There is no dataset 'Pings'. Datasets: none yet.
    """
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
    """``Conflict`` for an archived dataset: it takes no new requests or budgets.

    >>> refuse_if_archived(Dataset(name="Pings"))
    >>> refuse_if_archived(Dataset(name="Pings", archived_at=utcnow()))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    datasite.errors.Conflict: Dataset 'Pings' is archived: it takes no new requests ...
    """
    if dataset.archived_at is not None:
        raise Conflict(
            f"Dataset {dataset.name!r} is archived: it takes no new requests or budgets. "
            "The owner can restore it.",
        )


def find_asset(dataset: Dataset, name: str) -> Asset:
    """The dataset's asset named ``name``; ``NotFound`` lists the assets it has.

    >>> pings = Dataset(name="Pings", assets=[Asset(name="pings")])
    >>> find_asset(pings, "pings").name
    'pings'
    >>> find_asset(pings, "pongs")
    Traceback (most recent call last):
    ...
    datasite.errors.NotFound: Dataset 'Pings' has no asset 'pongs'. Assets: pings.
    """
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

    >>> pings = Dataset(name="Pings", description="", summary="", citation="",
    ...     contributors=[], created_at=utcnow(),
    ...     assets=[Asset(name="pings", description="", columns=[], mock_rows=10, real_rows=7)])
    >>> dataset_out(pings, User(role="researcher")).assets[0].real_rows is None
    True
    >>> dataset_out(pings, User(role="reviewer")).assets[0].real_rows
    7
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


def list_datasets(db: Session, viewer: User) -> list[Dataset]:
    """The datasets ``viewer`` may see, oldest first; researchers do not see archived ones."""
    query = select(Dataset).order_by(Dataset.id)
    if viewer.role == "researcher":
        query = query.where(Dataset.archived_at.is_(None))
    return list(db.scalars(query))


def create_dataset(
    db: Session,
    body: DatasetIn,
    *,
    owner: User,
    store: Storage,
    uploads: Path,
    address: str,
) -> Dataset:
    """A dataset made of uploaded tables (``uploads``), kept in ``store``; commits.

    Each asset's mock is an upload of its own or a DP synthetic copy of the real table
    (``datasite.synthetic_mock``; its spend is an audit event). Refused, with nothing
    stored, for a duplicate name, mocks whose columns differ from the real table's, or a
    ``body.policy`` the mocks are less k-anonymous than. Once the tables are stored the
    uploads are removed; a storage failure keeps them for a retry (``StorageFailed``).
    """
    if db.scalar(select(Dataset.id).where(Dataset.name == body.name)) is not None:
        raise Conflict(f"A dataset named {body.name!r} exists already.")
    names = [a.name for a in body.assets]
    if len(set(names)) != len(names):
        raise Invalid("Invalid request: asset names must differ.")
    policy = validated_policy(body.policy) if body.policy is not None else None
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
            address=address,
            target_type="dataset",
            target_id=dataset.name,
            assets=names,
        )
        if policy is not None:
            record_policy(db, dataset, policy.model_dump(mode="json"), actor=owner, address=address)
        for asset_name, released in synthetic.items():  # the owner-level DP spend
            audit_log.record(
                db, SYNTHETIC_MOCK, actor=owner, address=address,
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
    return dataset


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


def _synthetic_mock(real: Path, uploads: Path, asset: AssetIn) -> tuple[Path, dict]:
    """A DP synthetic mock of ``real`` as a new upload file (see ``datasite.synthetic_mock``)."""
    from datasite.synthetic_mock import SyntheticMockError, make_synthetic_mock

    if not real.exists():
        raise Invalid(f"Asset {asset.name!r}: the real upload is missing.")
    out = uploads / f"{secrets.token_hex(16)}.parquet"  # a new upload of the site's own
    try:
        return out, make_synthetic_mock(real, out, asset.synthetic.model_dump())
    except SyntheticMockError as exc:
        out.unlink(missing_ok=True)
        raise Invalid(f"Asset {asset.name!r}: {exc}.") from None


def set_archived(
    db: Session, name: str, archived: bool, *, owner: User, address: str, **detail: object
) -> Dataset:
    """Archive the dataset (hidden from researchers, no new requests or budgets; its
    requests, results, budgets and ledger entries stay) or restore it. Doing what is
    done already changes and records nothing; otherwise the audit event (with
    ``detail``) is written and committed."""
    dataset = find_dataset(db, name)
    if (dataset.archived_at is not None) != archived:
        dataset.archived_at = utcnow() if archived else None
        audit_log.record(
            db,
            "dataset_archived" if archived else "dataset_restored",
            actor=owner,
            address=address,
            target_type="dataset",
            target_id=dataset.name,
            **detail,
        )
        db.commit()
        log.info("dataset %s %s", dataset.id, "archived" if archived else "restored")
    return dataset


def delete_dataset(
    db: Session, name: str, *, owner: User, store: Storage, address: str
) -> DatasetRemovedOut:
    """Delete a dataset nobody has used: its assets, policy and unspent budgets go.

    A dataset that code requests (and so ledger entries) refer to is archived instead:
    the ledger's history is never lost. Commits, then removes the stored tables."""
    dataset = find_dataset(db, name)
    requests = db.scalar(
        select(func.count()).select_from(CodeRequest).where(CodeRequest.dataset_id == dataset.id)
    )
    if requests:
        kept = set_archived(
            db, name, True, owner=owner, address=address, instead_of="delete", requests=requests
        )
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
        address=address,
        target_type="dataset",
        target_id=dataset.name,
        assets=[a.name for a in dataset.assets],
        budgets_removed=grants,
    )
    db.commit()
    for key in files:
        store.delete(key)
    log.info("dataset %s deleted", dataset.id)
    return DatasetRemovedOut(
        name=dataset.name,
        outcome="deleted",
        detail=f"Deleted dataset {dataset.name!r} with its assets, policy and "
        f"{grants} unspent budget(s).",
    )


def generalise_asset(
    db: Session, dataset: Dataset, body: GeneraliseIn, *, owner: User, store: Storage, address: str
) -> tuple[Asset, Generalised]:
    """A k-anonymous (and l-diverse) copy of an asset's real table, made by anjana's
    generalisation (``datasite.generalisation``); audited and committed: the rows are
    real, generalised, not DP."""
    import pandas as pd

    from datasite.anonymity import asset_holding
    from datasite.generalisation import generalise

    wanted = [*body.quasi_identifiers, *body.identifiers, *filter(None, [body.sensitive])]
    record = asset_holding(dataset, wanted, body.asset)
    frame = pd.read_parquet(store.path(record.real_path))
    made = generalise(
        frame, body.quasi_identifiers, body.k, sensitive=body.sensitive, l=body.l,
        identifiers=body.identifiers, max_suppressed_percent=body.max_suppressed_percent,
        hierarchies=body.hierarchies,
    )  # fmt: skip
    audit_log.record(
        db, "dataset_generalised", actor=owner, address=address,
        target_type="dataset", target_id=dataset.name, asset=record.name, k=body.k,
        l=body.l, quasi_identifiers=body.quasi_identifiers, suppressed=made.suppressed,
    )  # fmt: skip
    db.commit()
    return record, made


def synthetic_tables(
    db: Session, dataset: Dataset, asset: str | None, store: Storage
) -> tuple[str, pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """The asset whose mock the site synthesized (the only one when ``asset`` is None),
    its real and mock tables and the synthetic mock's settings; ``NotFound`` when there
    is none. Both tables are read: for the owner's report and canary only."""
    import pandas as pd

    from datasite.synthetic_mock import released_settings

    try:
        asset_name, settings = released_settings(db, dataset.name, asset)
    except LookupError as exc:
        raise NotFound(f"{str(exc).capitalize()}.") from None
    found = find_asset(dataset, asset_name)
    real = pd.read_parquet(store.path(found.real_path))
    mock = pd.read_parquet(store.path(found.mock_path))
    return asset_name, real, mock, settings


def run_synthetic_canary(
    db: Session, dataset: Dataset, asset: str | None, *, owner: User, store: Storage, address: str
) -> tuple[str, dict[str, Any]]:
    """Plant secrets in a copy of the real table, synthesize (DP, non-DP), count replays
    (``datasite.synthetic_mock.canary``); audited and committed."""
    from datasite.synthetic_mock import canary

    asset_name, real, _, settings = synthetic_tables(db, dataset, asset, store)
    result = canary(real, settings)
    audit_log.record(
        db, "synthetic_canary_run", actor=owner, address=address,
        target_type="dataset", target_id=dataset.name, asset=asset_name,
        epsilon=result["epsilon"], delta=result["delta"],
    )  # fmt: skip
    db.commit()
    return asset_name, result
