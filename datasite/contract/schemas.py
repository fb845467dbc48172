"""Request and response bodies of the datasite API (JSON, validated by pydantic).

The server and both clients import these, so a field renamed here is renamed everywhere.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Role = Literal["owner", "reviewer", "researcher"]
Name = Annotated[str, Field(min_length=1, max_length=200)]
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


#: The longest dataset name; names appear in addresses, folders and tables.
DATASET_NAME_MAX = 100
_DATASET_NAME_EXTRA = frozenset(" -_.")


def check_dataset_name(value: str) -> str:
    """A dataset name that every client can put in an address: letters, digits, spaces,
    ``-``, ``_`` and ``.``, starting with a letter or digit.

    >>> check_dataset_name("Breast cancer v1.2")
    'Breast cancer v1.2'
    >>> check_dataset_name("a/b")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: 'a/b' is not a valid dataset name: use letters, digits, spaces, ... (no '/'), ...
    """
    ok = (
        0 < len(value) <= DATASET_NAME_MAX
        and value[0].isalnum()
        and not value.endswith(" ")
        and all(c.isalnum() or c in _DATASET_NAME_EXTRA for c in value)
    )
    if not ok:
        raise ValueError(
            f"{value!r} is not a valid dataset name: use letters, digits, spaces, '-', '_' "
            f"and '.' (no '/'), start with a letter or digit, and keep it to "
            f"{DATASET_NAME_MAX} characters"
        )
    return value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_email(value: str) -> str:
    value = value.strip().lower()
    if not _EMAIL.match(value) or len(value) > 320:
        raise ValueError(f"{value!r} is not an email address")
    return value


class LoginIn(Strict):
    email: str = Field(max_length=320)
    password: str = Field(min_length=1, max_length=500)

    _email = field_validator("email")(_check_email)


class UserOut(BaseModel):
    email: str
    name: str
    role: Role
    institution: str = ""
    website: str = ""
    disabled: bool = False


class LoginOut(BaseModel):
    token: str
    expires_at: datetime
    user: UserOut
    warning: str | None = None


class UserCreate(Strict):
    email: str
    name: Name
    role: Role = "researcher"
    password: str | None = Field(default=None, min_length=8, max_length=500)
    institution: str = Field(default="", max_length=200)
    website: str = Field(default="", max_length=300)

    _email = field_validator("email")(_check_email)


class UserCreated(UserOut):
    generated_password: str | None = None


class UserUpdate(Strict):
    disabled: bool | None = None
    role: Role | None = None


class ColumnOut(BaseModel):
    name: str
    dtype: str


class UploadOut(BaseModel):
    upload_id: str
    columns: list[ColumnOut]
    rows: int


class SyntheticMockIn(Strict):
    """A mock the site makes itself: a DP synthetic copy of the real table (its settings).

    Numeric columns need public ``bounds``; categorical columns keep their categories
    only where ``public_categories`` declares them, else they are found under ``delta``.
    """

    epsilon: float = Field(gt=0, le=100, description="The epsilon the synthetic mock spends.")
    delta: float = Field(default=0.0, ge=0, lt=1e-3)
    synthesizer: Literal["mst", "aim"] = "mst"
    bins: int = Field(default=10, ge=2, le=64)
    binning: Literal["uniform", "quantile"] = Field(
        default="uniform",
        description="Numeric columns: equal-width bins inside the public bounds, or bins at "
        "DP quantiles (a quantile_share of epsilon buys one DP histogram per column).",
    )
    quantile_share: float = Field(default=0.1, gt=0, lt=1)
    exact_integers: int = Field(
        default=100, ge=0, le=1000, description="Integer columns with fewer values kept whole."
    )
    bounds: dict[str, tuple[float, float]] = Field(default_factory=dict)
    public_categories: dict[str, list[Any]] = Field(default_factory=dict)
    rows: int | None = Field(default=None, ge=1, le=2_000_000)
    target: str | None = Field(default=None, max_length=200, description="For ML utility.")


class AssetIn(Strict):
    name: Name
    description: str = Field(default="", max_length=20_000)
    real_upload: str = Field(min_length=1, max_length=64)
    mock_upload: str | None = Field(default=None, min_length=1, max_length=64)
    synthetic: SyntheticMockIn | None = None

    @model_validator(mode="after")
    def _one_mock(self) -> AssetIn:
        if (self.mock_upload is None) == (self.synthetic is None):
            raise ValueError("give exactly one of mock_upload or synthetic (a DP synthetic mock)")
        return self


class DatasetIn(Strict):
    name: str = Field(description="Letters, digits, spaces, '-', '_' and '.'; at most 100.")
    description: str = Field(default="", max_length=100_000)
    summary: str = Field(default="", max_length=20_000)
    citation: str = Field(default="", max_length=20_000)
    contributors: list[str] = Field(default_factory=list, max_length=200)
    assets: list[AssetIn] = Field(min_length=1, max_length=100)
    policy: dict[str, Any] | None = Field(
        default=None,
        description="The dataset's policy, in force from the start; a mock less "
        "k-anonymous on its k_anonymity_qis than its min_group_size is refused.",
    )

    _name = field_validator("name")(check_dataset_name)


class AssetOut(BaseModel):
    name: str
    description: str
    columns: list[ColumnOut]
    mock_rows: int
    real_rows: int | None = None  # staff only: the exact private size never goes to researchers


class DatasetOut(BaseModel):
    name: str
    description: str
    summary: str
    citation: str
    contributors: list[str]
    created_at: datetime
    assets: list[AssetOut]
    archived: bool = False  # shown to staff only: researchers never see archived datasets


class DatasetRemovedOut(BaseModel):
    """What ``DELETE /datasets/{name}`` did: ``deleted``, or ``archived`` when requests or
    ledger entries refer to the dataset (they are kept, and so is the dataset)."""

    name: str
    outcome: Literal["deleted", "archived"]
    detail: str


class GeneraliseIn(Strict):
    """``POST /datasets/{name}/generalise``: a k-anonymous copy of an asset's real table
    (``datasite.generalisation``), for its owner."""

    quasi_identifiers: list[Name] = Field(
        min_length=1, max_length=50, description="The columns an outsider could link."
    )
    k: int = Field(ge=1, le=1_000_000, description="Every QI combination is shared by k rows.")
    sensitive: str | None = Field(default=None, max_length=200, description="For l-diversity.")
    l: int | None = Field(default=None, ge=1, le=1000, description="Distinct sensitive values.")  # noqa: E741
    identifiers: list[Name] = Field(
        default_factory=list, max_length=50, description="Columns replaced by '*'."
    )
    max_suppressed_percent: float = Field(
        default=5.0, ge=0, le=100, description="At most this share of rows may be dropped."
    )
    hierarchies: dict[str, list[dict[str, str | int | float]]] | None = Field(
        default=None,
        max_length=50,
        description="Per QI, its levels above the value: maps from value to label.",
    )
    asset: str | None = Field(default=None, max_length=200)


class PrivateTextIn(Strict):
    """``POST /datasets/{name}/private-text``: replace the mock's text ``column`` by the
    real documents under metric-DP word replacement (``datasite.text_privacy``)."""

    column: Name
    epsilon: float = Field(gt=0, le=1000, description="Per word, or per document (unit).")
    unit: Literal["word", "document"] = "word"
    oov: Literal["sample", "token"] = "sample"
    max_words: int = Field(default=100, ge=1, le=10_000, description="Words kept a document.")
    vocabulary: int = Field(default=50_000, ge=100, le=400_000)
    asset: Name | None = None


class ProjectIn(Strict):
    name: Name
    description: str = Field(default="", max_length=100_000)


class ProjectOut(BaseModel):
    id: int
    name: str
    description: str
    owner: str
    created_at: datetime


class ContextOptionsIn(Strict):
    queries: int = Field(default=1, ge=1, le=1000)
    max_contributions: int = Field(default=1, ge=1, le=100_000)


class CodeRequestIn(Strict):
    project: Name
    dataset: Name
    entry: str = Field(min_length=1, max_length=200)
    source: str = Field(min_length=1, max_length=500_000)
    bindings: dict[str, str] = Field(min_length=1, max_length=20)  # argument -> asset name
    kind: Literal["mechanism", "blind", "context"] = "mechanism"
    epsilon: float = Field(gt=0, le=100)
    delta: float = Field(default=0.0, ge=0, lt=1)
    mechanisms: list[str] = Field(default_factory=list, max_length=100)
    context: ContextOptionsIn = Field(default_factory=ContextOptionsIn)
    description: str = Field(default="", max_length=100_000)
    runs: int = Field(default=1, ge=1, le=1000)

    @field_validator("entry")
    @classmethod
    def _entry_is_identifier(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise ValueError(f"{value!r} is not a Python function name")
        return value

    @field_validator("bindings")
    @classmethod
    def _arguments_are_identifiers(cls, value: dict[str, str]) -> dict[str, str]:
        for argument in value:
            if not _IDENTIFIER.match(argument):
                raise ValueError(f"{argument!r} is not a Python argument name")
        return value


class RunOut(BaseModel):
    id: int
    state: str
    started_at: datetime
    finished_at: datetime | None
    error_type: str | None = None
    error_message: str | None = None
    # owner only, or once the owner released them:
    error_detail: str | None = None
    stdout: str | None = None
    stderr: str | None = None
    manifest: dict[str, Any] | None = None
    # owner and reviewers only (a run's timing is a channel): None for researchers
    duration_seconds: float | None = None


class ResultOut(BaseModel):
    """A request's state and its latest run, if any: what fetching a result needs."""

    request_id: int
    state: str
    deny_reason: str | None = None
    run: RunOut | None = None


class CodeRequestOut(BaseModel):
    id: int
    project: str
    dataset: str
    author: str
    entry: str
    source: str
    source_hash: str
    kind: str
    bindings: dict[str, str]
    epsilon: float
    delta: float
    mechanisms: list[str]
    context: dict[str, Any]
    description: str
    runs_allowed: int
    runs_used: int
    state: str
    deny_reason: str | None
    override_justification: str | None
    policy_report: dict[str, Any] | None
    policy_version: str | None
    created_at: datetime
    updated_at: datetime
    runs: list[RunOut] = Field(default_factory=list)


class ApproveIn(Strict):
    justification: str | None = Field(default=None, max_length=20_000)


class DenyIn(Strict):
    reason: str = Field(min_length=1, max_length=20_000)


class WithheldDecisionIn(Strict):
    release: bool  # true: the researcher gets the result; false: the request fails


class GrantIn(Strict):
    email: str
    dataset: Name
    epsilon: float = Field(ge=0, le=1000)
    delta: float = Field(default=0.0, ge=0, lt=1)

    _email = field_validator("email")(_check_email)


class GrantOut(BaseModel):
    email: str
    dataset: str
    epsilon: float
    delta: float
    spent_epsilon: float
    spent_delta: float
    remaining_epsilon: float
    remaining_delta: float


class LedgerEntryOut(BaseModel):
    id: int
    email: str
    dataset: str
    request_id: int
    kind: str
    epsilon: float
    delta: float
    audit_event_id: int | None
    created_at: datetime


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    target_type: str
    target_id: str
    detail: dict[str, Any]
    address: str
