"""The site's metadata tables.

Tables hold metadata only: the asset tables themselves live as Parquet files under the
storage root, and results as files under the results folder. Every change of state that
matters for trust (a login, an approval, a budget reservation) also leaves an
``AuditEvent``, which the API never updates or deletes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    joinedload,
    mapped_column,
    relationship,
    selectinload,
)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))  # owner | reviewer | researcher
    password_hash: Mapped[str] = mapped_column(String(200))
    institution: Mapped[str] = mapped_column(String(200), default="")
    website: Mapped[str] = mapped_column(String(300), default="")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SessionToken(Base):
    """A bearer token; only its SHA-256 is stored, so a database leak yields no sessions."""

    __tablename__ = "session_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)

    user: Mapped[User] = relationship()


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    summary: Mapped[str] = mapped_column(Text, default="")
    citation: Mapped[str] = mapped_column(Text, default="")
    contributors: Mapped[list[Any]] = mapped_column(default=list)
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Set when the owner archives it: hidden from researchers, no new requests; its
    # requests and ledger entries stay.
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    assets: Mapped[list[Asset]] = relationship(
        back_populates="dataset", order_by="Asset.id", cascade="all, delete-orphan"
    )


class Asset(Base):
    __tablename__ = "assets"
    __table_args__ = (UniqueConstraint("dataset_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    columns: Mapped[list[Any]] = mapped_column(default=list)  # [{"name", "dtype"}]
    real_rows: Mapped[int] = mapped_column(Integer)
    mock_rows: Mapped[int] = mapped_column(Integer)
    real_path: Mapped[str] = mapped_column(String(500))  # relative to the storage root
    mock_path: Mapped[str] = mapped_column(String(500))

    dataset: Mapped[Dataset] = relationship(back_populates="assets")


class PolicySetting(Base):
    """A dataset's policy, or a per-researcher override of it (``user_id`` set)."""

    __tablename__ = "policy_settings"
    __table_args__ = (UniqueConstraint("dataset_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    document: Mapped[dict[str, Any]] = mapped_column()
    version: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("owner_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    owner: Mapped[User] = relationship()


class CodeRequest(Base):
    __tablename__ = "code_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    entry: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(Text)
    source_hash: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(20))
    bindings: Mapped[dict[str, Any]] = mapped_column()  # argument name -> asset id
    epsilon: Mapped[float] = mapped_column(Float)
    delta: Mapped[float] = mapped_column(Float, default=0.0)
    mechanisms: Mapped[list[Any]] = mapped_column(default=list)
    context_options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    description: Mapped[str] = mapped_column(Text, default="")
    runs_allowed: Mapped[int] = mapped_column(Integer, default=1)
    runs_used: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(20), index=True)
    deny_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    override_justification: Mapped[str | None] = mapped_column(Text, nullable=True)
    policy_report: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    policy_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    project: Mapped[Project] = relationship()
    author: Mapped[User] = relationship(foreign_keys=[author_id])
    dataset: Mapped[Dataset] = relationship()
    runs: Mapped[list[RequestRun]] = relationship(
        back_populates="request", order_by="RequestRun.id"
    )


class RequestRun(Base):
    """One execution of an approved request on the private data."""

    __tablename__ = "request_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("code_requests.id"), index=True)
    state: Mapped[str] = mapped_column(String(20))  # running | released | failed
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    touched_data: Mapped[bool] = mapped_column(Boolean, default=False)
    error_type: Mapped[str | None] = mapped_column(String(200), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)  # researcher-safe
    error_detail: Mapped[str | None] = mapped_column(Text, nullable=True)  # owner only
    stdout: Mapped[str] = mapped_column(Text, default="")  # owner only
    stderr: Mapped[str] = mapped_column(Text, default="")  # owner only
    detail_released: Mapped[bool] = mapped_column(Boolean, default=False)
    manifest: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    #: None when unknown: a run the datasite was killed during (``Interrupted``)
    duration_seconds: Mapped[float | None] = mapped_column(Float, nullable=True, default=0.0)

    request: Mapped[CodeRequest] = relationship(back_populates="runs")


class BudgetGrant(Base):
    """How much privacy loss one researcher may spend on one dataset, and has spent.

    ``spent_*`` only ever moves through a conditional UPDATE (see ``datasite.ledger``), so
    concurrent approvals cannot overspend on SQLite or PostgreSQL.
    """

    __tablename__ = "budget_grants"
    __table_args__ = (UniqueConstraint("user_id", "dataset_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    epsilon: Mapped[float] = mapped_column(Float)
    delta: Mapped[float] = mapped_column(Float, default=0.0)
    spent_epsilon: Mapped[float] = mapped_column(Float, default=0.0)
    spent_delta: Mapped[float] = mapped_column(Float, default=0.0)

    user: Mapped[User] = relationship()
    dataset: Mapped[Dataset] = relationship()


class LedgerEntry(Base):
    __tablename__ = "ledger_entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    grant_id: Mapped[int] = mapped_column(ForeignKey("budget_grants.id"), index=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("code_requests.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # reserve | refund
    epsilon: Mapped[float] = mapped_column(Float)
    delta: Mapped[float] = mapped_column(Float, default=0.0)
    audit_event_id: Mapped[int | None] = mapped_column(ForeignKey("audit_events.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    actor_email: Mapped[str] = mapped_column(String(320), default="")
    action: Mapped[str] = mapped_column(String(64), index=True)
    target_type: Mapped[str] = mapped_column(String(32), default="")
    #: a request id, a dataset name, "<email>/<dataset>" for a grant (String(600): 0004)
    target_id: Mapped[str] = mapped_column(String(600), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    address: Mapped[str] = mapped_column(String(64), default="")


#: Loader options for everything a whole request view reads (its project, author,
#: dataset with assets, and runs), loaded with the request instead of one query each.
REQUEST_VIEW = (
    joinedload(CodeRequest.project),
    joinedload(CodeRequest.author),
    joinedload(CodeRequest.dataset).selectinload(Dataset.assets),
    selectinload(CodeRequest.runs),
)
