"""What a dataset's owner allows: the policy every code request is checked against.

A :class:`Policy` is plain data. Owners write it as YAML or TOML (``Policy.from_file``),
the server stores it as JSON, and every policy report records the policy's ``version``
(a hash of its content), so a reviewer can tell which rules a request was checked
against even after the owner changed them.

>>> from policies.schema import DEFAULT_POLICY, Policy
>>> strict = Policy(max_epsilon_per_request=0.5, non_dp_outputs="block")
>>> strict.version != DEFAULT_POLICY.version
True
>>> DEFAULT_POLICY.for_researcher({"max_epsilon_per_request": 2.0}).max_epsilon_per_request
2.0
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from policies import dp_libraries
from policies.sdc import SdcRules

NonDPOutputs = Literal["block", "review", "allow"]
Neighbouring = Literal["add_remove", "change"]

#: Relative slack when a measured or declared privacy loss is compared with its limit (the
#: declaration, the policy's maximum): float rounding in a privacy map is not an overspend.
TOLERANCE = 1e-6

#: DP constructors and helpers a request may call: each registered DP library's defaults
#: (:mod:`policies.dp_libraries`), in registry order: OpenDP's noise measurements, its
#: Context API, diffprivlib's models/tools/mechanisms, the kit's helpers. Names are
#: matched against the last component of the called name (``dp.m.make_laplace`` ->
#: ``make_laplace``) for OpenDP constructors and diffprivlib classes, and by their dotted
#: prefix for the kit's helpers.
DEFAULT_MECHANISMS: tuple[str, ...] = dp_libraries.default_mechanisms()

#: The packages a request may import: the data-science stack, the DP libraries and pure
#: standard-library modules. The order is part of ``DEFAULT_POLICY.version``, so a newly
#: registered library's packages are added at the end (:func:`default_imports`).
DEFAULT_IMPORTS: tuple[str, ...] = (
    "pandas",
    "numpy",
    "opendp",
    "polars",
    "dask",  # a raw-data function may ask for a Dask DataFrame (large assets)
    "sklearn",
    "diffprivlib",
    "skops",
    "researcher_kit",
    "scipy",
    "math",
    "datetime",
    "statistics",
    "collections",
    "itertools",
    "functools",
    "random",
    "typing",
    "decimal",
    "fractions",
    "json",
    "re",
)


def default_imports() -> tuple[str, ...]:
    """:data:`DEFAULT_IMPORTS`, then any registered library's packages it lacks."""
    extra = [m for lib in dp_libraries.LIBRARIES for m in lib.imports if m not in DEFAULT_IMPORTS]
    return DEFAULT_IMPORTS + tuple(dict.fromkeys(extra))


#: What a dataset's policy is, in words for the people who set it (the policy form's intro).
INTRO = (
    "The rules every code request on this dataset is checked against before anyone may "
    "approve it: how much privacy loss a request and a researcher may spend, which code "
    "a request may run, and what happens to outputs that are not differentially private. "
    "Each field says what it does."
)


class AuditSettings(BaseModel):
    """How long and how often the empirical audit may run the request on the mock."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        default=True,
        description="Run the empirical audit: the checker runs a raw-data request many "
        "times on neighbouring copies of the mock and measures how much its outputs "
        "reveal, to catch a declared epsilon that is too small.",
    )
    time_budget_seconds: float = Field(
        title="Time budget (seconds)",
        default=0.5,
        gt=0,
        le=600,
        description="How long the audit may run, in seconds. Longer finds more, and "
        "delays the report.",
    )
    max_trials: int = Field(
        default=20000,
        ge=20,
        le=1_000_000,
        description="At most this many fresh runs on each of the two made-up tables the "
        "audit tests (at least 20); its screening makes at most an eighth of that per "
        "table. The time budget usually ends the audit first.",
    )
    confidence: float = Field(
        default=0.95,
        gt=0.5,
        lt=1,
        description="How sure the audit must be before it reports a lower bound on the "
        "privacy loss (0.95 = 95%).",
    )
    dry_run_timeout_seconds: float = Field(
        title="Dry-run time limit (seconds)",
        default=20.0,
        gt=0,
        le=3600,
        description="A dry run on the mock that takes longer than this many seconds is "
        "stopped and the request blocked (code that may never finish).",
    )


class Policy(BaseModel):
    """A dataset's rules for code requests (see :data:`DEFAULT_POLICY` for the defaults).

    ``non_dp_outputs`` says what an output that is not DP does to the verdict: ``block``
    (the request is blocked; the default), ``review`` (a human decides) or ``allow``
    (reported for information only). ``auto_approve`` lets the server approve, without a
    human, a data-blind request whose report passes. ``max_contributions`` is the privacy
    unit (rows per person) every release is bound with, whatever the request says.
    ``min_group_size`` is the smallest group a non-DP table output may describe (reported
    when such outputs are allowed).
    """

    #: The description people read above the policy form (the docstring is for code).
    model_config = ConfigDict(extra="forbid", json_schema_extra={"description": INTRO})

    max_epsilon_per_request: float = Field(
        default=1.0,
        gt=0,
        description="The most privacy loss (epsilon) one request may declare per run. "
        "Smaller is more private; 1 is a common upper end for a single release.",
    )
    max_delta_per_request: float = Field(
        default=1e-6,
        ge=0,
        lt=1,
        description="The most delta one request may declare: the small chance that the "
        "epsilon guarantee fails. Keep it far below 1 / the number of people.",
    )
    default_total_epsilon: float = Field(
        default=10.0,
        ge=0,
        description="Each researcher's total epsilon budget on this dataset, unless you "
        "grant them another. Requests draw on it until it is spent.",
    )
    default_total_delta: float = Field(
        default=1e-5,
        ge=0,
        lt=1,
        description="Each researcher's total delta budget on this dataset, unless you "
        "grant them another.",
    )
    allowed_mechanisms: list[str] = Field(
        default_factory=lambda: list(dp_libraries.default_mechanisms()),
        description="The DP functions a request may call (OpenDP constructors such as "
        "make_laplace, diffprivlib.models.*, researcher_kit.dp.*). A name ending in .* "
        "allows everything under it; any other noise is reported.",
    )
    allowed_imports: list[str] = Field(
        default_factory=lambda: list(default_imports()),
        description="The packages a request's code may import (each with its "
        "submodules). Anything else, such as os or socket, blocks the request.",
    )
    non_dp_outputs: NonDPOutputs = Field(
        title="Non-DP outputs",
        default="block",
        description="What an output that is not differentially private does: block "
        "(the request is blocked; an owner may still override with a reason), review "
        "(a person decides) or allow (reported only; disclosure control still applies).",
    )
    auto_approve: bool = Field(
        default=False,
        description="Approve without a person a data-blind request whose check passes "
        "and that fits the researcher's budget. Raw-data requests always wait for a "
        "person.",
    )
    #: The privacy unit: one person is at most this many rows of the dataset. The site
    #: binds every release with it; a request cannot choose its own.
    max_contributions: int = Field(
        title="Rows per person (the privacy unit)",
        default=1,
        ge=1,
        le=100_000,
        description="The privacy unit: the most rows one person has in this dataset. "
        "Every release protects a whole person; a request cannot change it.",
    )
    #: One definition of neighbouring datasets for the whole check.
    neighbouring: Neighbouring = Field(
        title="Neighbouring datasets",
        default="add_remove",
        description="What DP protects here: 'add_remove' (a person's rows added or removed) "
        "or 'change' (a person's rows changed; the table's size is public). The dry-run's "
        "privacy maps (a change is one removal and one addition) and the empirical audit's "
        "made-up tables use it; the report says which.",
    )
    min_group_size: int = Field(
        default=10,
        ge=1,
        description="The smallest group a non-DP table may describe (the k of "
        "k-anonymity, and the cell threshold of disclosure control).",
    )
    audit: AuditSettings = Field(
        default_factory=AuditSettings,
        title="Empirical audit",
        description="How the checker tests a raw-data request's privacy claim on the mock.",
    )
    #: Disclosure control of non-DP table outputs (``policies.sdc``); ACRO's defaults.
    sdc: SdcRules = Field(
        default_factory=SdcRules,
        title="Disclosure control of non-DP tables",
        description="Cell rules for tables that are not DP, when non-DP outputs are "
        "allowed (ACRO's defaults).",
    )
    #: A non-DP model whose membership-inference AUC exceeds this is withheld.
    mia_max_auc: float = Field(
        title="Highest membership-attack AUC of a non-DP model",
        default=0.6,
        gt=0.5,
        le=1,
        description="A model fitted without DP is withheld when a membership-inference "
        "attack tells its training rows from others better than this (0.5 = chance, "
        "1 = always).",
    )
    #: Quasi-identifiers, with ``min_group_size`` as k: a mock less k-anonymous on them is
    #: refused, a non-DP row-level output below k withheld (``datasite.anonymity``).
    k_anonymity_qis: list[str] = Field(
        title="Quasi-identifiers (k-anonymity)",
        default_factory=list,
        description="Quasi-identifiers: columns that together could single a person out "
        "(age, postcode, sex). A mock, or a non-DP row-level output, in which a group "
        "on them is smaller than the minimum group size is refused.",
    )

    @model_validator(mode="before")
    @classmethod
    def _drop_version(cls, data: Any) -> Any:
        # ``version`` is derived, but stored documents and API answers carry it.
        if isinstance(data, dict) and "version" in data:
            data = {k: v for k, v in data.items() if k != "version"}
        return data

    @property
    def version(self) -> str:
        """A short content hash: equal policies have equal versions."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @classmethod
    def from_file(cls, path: str | Path) -> Policy:
        """Load a policy from a ``.yaml``/``.yml``, ``.toml`` or ``.json`` file."""
        path = Path(path)
        text = path.read_text()
        suffix = path.suffix.lower()
        if suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        elif suffix == ".toml":
            data = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ValueError(f"{path.name}: a policy file is .yaml, .yml, .toml or .json")
        return cls.model_validate(data)

    def sdc_rules(self) -> SdcRules:
        """The SDC rules with the cell threshold resolved (``min_group_size`` by default)."""
        if self.sdc.threshold is not None:
            return self.sdc
        return self.sdc.model_copy(update={"threshold": self.min_group_size})

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    def for_researcher(self, overrides: PolicyOverrides | dict[str, Any] | None) -> Policy:
        """This policy with one researcher's overrides laid over it (validated again)."""
        if overrides is None:
            return self
        if isinstance(overrides, dict):
            overrides = PolicyOverrides.model_validate(overrides)
        changes = overrides.model_dump(exclude_none=True, mode="json")
        return Policy.model_validate({**self.model_dump(mode="json"), **changes})

    def allows_import(self, module: str) -> bool:
        """Whether ``module`` (dotted) is inside an allowed top-level package."""
        return any(module == a or module.startswith(a + ".") for a in self.allowed_imports)

    def allows_mechanism(self, name: str) -> bool:
        """Whether a mechanism (short constructor name or dotted path) is allowed.

        Entries ending in ``.*`` allow everything under a dotted prefix; other entries
        match the full name or its last component.
        """
        last = name.rsplit(".", 1)[-1]
        for allowed in self.allowed_mechanisms:
            if allowed.endswith(".*"):
                if name.startswith(allowed[:-1]):
                    return True
            elif allowed in (name, last) or allowed == last.replace("then_", "make_", 1):
                return True
        return False


class PolicyOverrides(BaseModel):
    """Fields an owner may set for one researcher; unset fields keep the dataset's value."""

    model_config = ConfigDict(extra="forbid")

    max_epsilon_per_request: float | None = Field(default=None, gt=0)
    max_delta_per_request: float | None = Field(default=None, ge=0, lt=1)
    default_total_epsilon: float | None = Field(default=None, ge=0)
    default_total_delta: float | None = Field(default=None, ge=0, lt=1)
    allowed_mechanisms: list[str] | None = None
    allowed_imports: list[str] | None = None
    non_dp_outputs: NonDPOutputs | None = None
    auto_approve: bool | None = None
    min_group_size: int | None = Field(default=None, ge=1)


DEFAULT_POLICY = Policy()
"""The policy of a dataset whose owner set none.

- ``max_epsilon_per_request=1.0``, ``max_delta_per_request=1e-6``: one request may spend
  at most epsilon 1 (a common upper end for a single release) and a delta far below 1/n.
- ``default_total_epsilon=10.0``, ``default_total_delta=1e-5``: each researcher's ledger
  grant on a dataset unless the owner grants another.
- ``allowed_mechanisms``: OpenDP's noise measurements (Laplace, Gaussian, geometric,
  thresholds, noisy max, randomized response, quantiles, Polars plans), the Context API,
  diffprivlib's models/tools/mechanisms and the kit's ``researcher_kit.dp`` helpers.
- ``allowed_imports``: the data-science stack (pandas, NumPy, SciPy, Polars,
  scikit-learn, skops), the DP libraries, the kit, and pure standard-library modules
  (math, statistics, datetime, ...). No os/sys/subprocess/socket/pickle/importlib.
- ``non_dp_outputs="block"``: an output that is not DP (a raw aggregate, rows, a model
  fitted without DP) blocks the request; an owner may still override with a justification.
- ``auto_approve=False``: nothing is approved without a human unless the owner opts in.
- ``sdc``: threshold ``min_group_size``, dominance n=2 k=0.90, p-ratio 0.10 (ACRO); no
  small-number redaction or rounding unless set; failing cells suppressed.
- ``mia_max_auc=0.6``: a non-DP model the loss attack beats with a higher AUC is withheld.
- ``k_anonymity_qis=[]``: no quasi-identifiers declared, so no k-anonymity checks.
- ``min_group_size=10``; audit: 0.5 s on the mock, at most 20,000 fresh runs per
  table, 95% confidence.
"""
