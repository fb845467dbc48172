"""k-anonymity and l-diversity on declared quasi-identifiers: every rule in one place.

A table is *k-anonymous* on its quasi-identifiers (QIs: columns an outsider can link to
a person, such as age, sex and postcode) when every combination of their values that
occurs is shared by at least ``k`` rows; it is *l-diverse* on a sensitive column when
each such group holds at least ``l`` distinct sensitive values. The site uses them in
three places, all through :func:`check_anonymity`:

- the owner's tool (``GET /datasets/{name}/anonymity``, ``owner.datasets.
  check_anonymity``, ``datasite datasets anonymity``) reports k, l and the smallest groups
  of the real table or of the mock. Group sizes and QI values are private: they go to the
  owner only, never to researchers;
- at upload (and when a policy is set), a mock less anonymous than the policy asks
  (``Policy.k_anonymity_qis``, ``Policy.min_group_size`` as k) is refused with its
  smallest groups named, before anything is stored (:func:`refuse_unless_anonymous`);
- a raw-data run's row-level output (a released table carrying declared QIs as columns)
  is checked on the real run (``datasite.disclosure``) and withheld for the owner below k
  (:func:`row_level_qis`, :func:`check_rows`).

k, l, the group sizes and the smallest groups come from one vectorised pandas
``groupby`` on the columns' integer codes (a missing value is a group of its own). pycanon
(``pycanon.anonymity``, installed ``--no-deps``: its pins are older than ours) computes k
and l again on the same codes as a cross-check where it is fast enough: its
``l_diversity`` loops over the groups in Python (about 1 s for 960 groups of 1M rows,
57 s for 180,000 groups; ``bench/bench_sdc.py``), so ``engine="auto"`` asks it only for
tables of at most :data:`PYCANON_MAX_ROWS` rows and :data:`PYCANON_MAX_GROUPS` groups
(mocks, released outputs, tables like the demo's). Handing it codes also avoids two of its
behaviours: its ``groupby`` drops rows with a missing QI, and it mixes index labels with
positions (a table whose index is not 0..n-1 fails). The report says which engine
answered and whether both agreed.

>>> import pandas as pd
>>> frame = pd.DataFrame({"age": [30, 30, 30, 41, 41], "sex": ["f", "f", "f", "m", "m"],
...                       "dx": ["a", "b", "a", "c", "c"]})
>>> report = check_anonymity(frame, ["age", "sex"], sensitive=["dx"], k=3, engine="pandas")
>>> report.k, report.l, report.passes, report.smallest[0].values, report.smallest[0].size
(2, 1, False, {'age': 41, 'sex': 'm'}, 2)
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from datasite.errors import Invalid

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("datasite.anonymity")
Engine = Literal["auto", "pycanon", "pandas"]
#: How many of the smallest groups a report lists (and a refusal names).
SMALLEST_LISTED = 5
#: ``engine="auto"``: pycanon cross-checks tables up to this size (see the module's text).
PYCANON_MAX_ROWS = 200_000
PYCANON_MAX_GROUPS = 2_000


@dataclass
class Group:
    """One combination of QI values and how many rows share it (private: owner only)."""

    values: dict[str, Any]
    size: int

    def describe(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.values.items())
        return f"({shown}): {self.size} row{'s' if self.size != 1 else ''}"


@dataclass
class AnonymityReport:
    """k, l and the smallest groups of one table on its quasi-identifiers."""

    rows: int
    quasi_identifiers: list[str]
    sensitive: list[str]
    k: int | None  # None for a table without rows
    l: int | None  # noqa: E741 - the name of the property; None without sensitive columns
    groups: int
    required_k: int | None = None
    groups_below_k: int = 0
    rows_below_k: int = 0
    smallest: list[Group] = field(default_factory=list)
    engine: str = "pandas"
    cross_checked: bool | None = None  # pycanon and the groupby agreed (None: one engine)

    @property
    def passes(self) -> bool | None:
        """Whether k reaches ``required_k`` (None when no k was asked for)."""
        if self.required_k is None:
            return None
        return self.k is None or self.k >= self.required_k

    def summary(self) -> str:
        """One line without any value from the table (sizes and counts only)."""
        qis = ", ".join(self.quasi_identifiers)
        text = f"k={self.k} on {qis} ({self.groups} groups in {self.rows} rows)"
        if self.sensitive:
            text += f", l={self.l} on {', '.join(self.sensitive)}"
        if self.required_k is not None:
            verdict = "meets" if self.passes else "is below"
            text += f"; {verdict} the required k={self.required_k}"
            if self.groups_below_k:
                text += f" ({self.groups_below_k} groups, {self.rows_below_k} rows under it)"
        return text

    def describe_smallest(self) -> str:
        """The smallest groups with their QI values: for the owner only."""
        return "; ".join(g.describe() for g in self.smallest)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passes": self.passes, "summary": self.summary()}


def unknown_columns(columns: Any, names: list[str]) -> list[str]:
    known = {str(c) for c in columns}
    return [n for n in names if n not in known]


def _plain(value: Any) -> Any:
    """A JSON-safe Python value (NaN and NaT become None)."""
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        try:
            value = value.item()
        except (ValueError, TypeError):
            value = str(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool | int | float | str):
        return value
    import pandas as pd

    return None if pd.isna(value) is True else str(value)


def _codes(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The columns as integer codes, a missing value a code of its own, index 0..n-1."""
    import pandas as pd

    def codes(column: pd.Series) -> Any:
        try:
            return pd.factorize(column, use_na_sentinel=False)[0]
        except TypeError:  # unhashable values (lists from a Parquet list column): by text
            return pd.factorize(column.map(repr), use_na_sentinel=False)[0]

    return pd.DataFrame({c: codes(frame[c]) for c in columns}, index=pd.RangeIndex(len(frame)))


def _pycanon_k_l(codes: pd.DataFrame, qis: list[str], sensitive: list[str]):  # type: ignore[no-untyped-def]
    from pycanon import anonymity

    k = int(anonymity.k_anonymity(codes, qis))
    l_div = int(anonymity.l_diversity(codes, qis, sensitive)) if sensitive else None
    return k, l_div


def check_anonymity(
    frame: pd.DataFrame,
    quasi_identifiers: list[str],
    sensitive: list[str] | None = None,
    k: int | None = None,
    *,
    engine: Engine = "auto",
    listed: int = SMALLEST_LISTED,
) -> AnonymityReport:
    """k (and l on ``sensitive``) of ``frame`` on ``quasi_identifiers``, its smallest
    groups, and with ``k`` whether it reaches it. Unknown or missing column names are an
    :class:`~datasite.errors.Invalid` naming them."""
    import numpy as np

    qis = [str(q) for q in quasi_identifiers]
    sensitive = [str(s) for s in sensitive or []]
    if not qis:
        raise Invalid("Name at least one quasi-identifier column.")
    if len(set(qis)) != len(qis) or set(qis) & set(sensitive):
        raise Invalid("Each column is named once, as a quasi-identifier or as sensitive.")
    missing = unknown_columns(frame.columns, qis + sensitive)
    if missing:
        raise Invalid(
            f"Unknown column(s) {', '.join(map(repr, missing))}; the table's columns are "
            f"{', '.join(map(str, frame.columns))}."
        )
    if k is not None and k < 1:
        raise Invalid("k is a whole number of at least 1.")
    rows = len(frame)
    report = AnonymityReport(rows, qis, sensitive, None, None, 0, required_k=k)
    if rows == 0:
        return report
    codes = _codes(frame, qis + sensitive)
    group = codes.groupby(qis, sort=False).ngroup().to_numpy()
    sizes = np.bincount(group)
    report.groups = len(sizes)
    report.k = int(sizes.min())
    if sensitive:
        distinct = codes[sensitive].assign(_g=group).groupby("_g").nunique()
        report.l = int(distinct.min(axis=1).min())
    small = rows <= PYCANON_MAX_ROWS and report.groups <= PYCANON_MAX_GROUPS
    if engine == "pycanon" or (engine == "auto" and small):
        try:
            k_pc, l_pc = _pycanon_k_l(codes, qis, sensitive)
        except ImportError:
            if engine == "pycanon":
                raise
        except Exception as exc:  # noqa: BLE001 - the groupby's numbers stand; say so
            log.warning("pycanon failed (%s); the pandas groupby answers", exc)
            report.engine = f"pandas (pycanon failed: {type(exc).__name__})"
        else:
            report.engine = "pycanon"
            report.cross_checked = (k_pc, l_pc) == (report.k, report.l)
            if not report.cross_checked:  # never expected; keep the smaller, log both
                log.error("pycanon k=%s l=%s, groupby k=%s l=%s", k_pc, l_pc, report.k, report.l)
                report.k = min(k_pc, report.k)
                report.l = None if l_pc is None else min(l_pc, report.l or l_pc)
    if k is not None:
        small = sizes < k
        report.groups_below_k = int(small.sum())
        report.rows_below_k = int(sizes[small].sum())
    order = np.argsort(sizes, kind="stable")[: max(listed, 0)]
    _, first_row = np.unique(group, return_index=True)
    for g in order:
        row = frame.iloc[int(first_row[g])]
        report.smallest.append(Group({q: _plain(row[q]) for q in qis}, int(sizes[g])))
    return report


def refuse_unless_anonymous(
    frame: pd.DataFrame, quasi_identifiers: list[str], k: int, what: str
) -> AnonymityReport:
    """Raise :class:`~datasite.errors.Invalid` naming the smallest groups when ``frame``
    is less than ``k``-anonymous on ``quasi_identifiers`` (``what`` names the table)."""
    report = check_anonymity(frame, quasi_identifiers, k=k)
    if report.passes is False:
        raise Invalid(
            f"{what} is {report.k}-anonymous on {', '.join(report.quasi_identifiers)}; the "
            f"policy asks for k={k} ({report.groups_below_k} of {report.groups} groups are "
            f"smaller). Smallest groups: {report.describe_smallest()}. Coarsen or drop "
            "those values in the mock, or let the site synthesize it."
        )
    return report


def declared_qis(policy: Any, columns: Any) -> list[str]:
    """The policy's quasi-identifiers that ``columns`` hold."""
    known = {str(c) for c in columns}
    return [q for q in policy.k_anonymity_qis if q in known]


def row_level_qis(table: Any, policy: Any) -> list[str]:
    """The declared QIs a released table carries as row-level columns ([] if none).

    A table grouped by raw columns (a crosstab, a ``groupby`` result with its keys in
    the index) is an aggregate, checked cell by cell by ``policies.sdc``; a DataFrame (or
    a Series named after a QI) without a named index that carries declared QIs as
    columns is treated as rows, whatever it was computed as: an aggregate with the keys
    as columns (``as_index=False``) is checked as rows too, the cautious side.
    """
    import pandas as pd

    if not getattr(policy, "k_anonymity_qis", None):
        return []
    if any(n is not None for n in table.index.names):
        return []
    if isinstance(table, pd.Series):
        return [str(table.name)] if str(table.name) in policy.k_anonymity_qis else []
    if not isinstance(table, pd.DataFrame):
        return []
    return declared_qis(policy, table.columns)


def check_rows(table: Any, policy: Any, name: str = "output") -> tuple[str | None, str]:
    """``(withhold reason or None, note for the owner)`` for one row-level output."""
    import pandas as pd

    qis = row_level_qis(table, policy)
    frame = table.to_frame() if isinstance(table, pd.Series) else table
    report = check_anonymity(frame, qis, k=policy.min_group_size, listed=0)
    note = f"{name}: row-level table, {report.summary()}"
    if report.passes is False:
        return (
            f"{name} is a row-level table {report.k}-anonymous on {', '.join(qis)}, below "
            f"the policy's k={policy.min_group_size}",
            note,
        )
    return None, note


def refuse_less_anonymous_mocks(policy: Any, mocks: dict[str, tuple[Any, list[str]]]) -> None:
    """Refuse (:class:`~datasite.errors.Invalid`) mocks less anonymous than ``policy``.

    ``mocks`` maps each asset to ``(its mock's Parquet path, its column names)``. Every
    declared quasi-identifier must be a column of some asset; each asset's mock is checked
    on the declared QIs it holds, with ``min_group_size`` as k. Nothing is written: the
    caller stores nothing when this raises."""
    import pandas as pd

    qis = list(policy.k_anonymity_qis)
    if not qis:
        return
    held = {c for _, columns in mocks.values() for c in columns}
    missing = [q for q in qis if q not in held]
    if missing:
        raise Invalid(
            f"The policy's quasi-identifier(s) {', '.join(map(repr, missing))} are no "
            f"column of any asset; the columns are {', '.join(sorted(held))}."
        )
    for asset, (path, columns) in mocks.items():
        present = [q for q in qis if q in columns]
        if present:
            mock = pd.read_parquet(path, columns=present)
            refuse_unless_anonymous(
                mock, present, policy.min_group_size, f"Asset {asset!r}: the mock"
            )


def stored_mocks(dataset: Any, store: Any) -> dict[str, tuple[Any, list[str]]]:
    """``{asset: (its stored mock's path, its column names)}`` of an ORM ``Dataset``, for
    :func:`refuse_less_anonymous_mocks` when a policy changes."""
    return {
        a.name: (store.path(a.mock_path), [c["name"] for c in a.columns]) for a in dataset.assets
    }


def dataset_anonymity(
    dataset: Any,
    policy: Any,
    store: Any,
    quasi_identifiers: list[str] | None = None,
    sensitive: list[str] | None = None,
    k: int | None = None,
    side: Literal["real", "mock"] = "real",
    asset: str | None = None,
) -> dict[str, Any]:
    """The owner's report on one asset of ``dataset`` (an ORM ``Dataset``): the policy's
    QIs and ``min_group_size`` unless given; the asset holding them unless named."""
    import pandas as pd

    qis = list(quasi_identifiers or policy.k_anonymity_qis)
    if not qis:
        raise Invalid(
            "Name the quasi-identifier columns (or declare k_anonymity_qis in the policy)."
        )
    wanted = qis + list(sensitive or [])
    record = asset_holding(dataset, wanted, asset)
    found = record.name
    path = store.path(record.real_path if side == "real" else record.mock_path)
    frame = pd.read_parquet(path, columns=list(dict.fromkeys(wanted)))
    required = k if k is not None else policy.min_group_size
    report = check_anonymity(frame, qis, sensitive, k=required)
    return {"dataset": dataset.name, "asset": found, "side": side, **report.to_dict()}


def asset_holding(dataset: Any, wanted: list[str], asset: str | None = None) -> Any:
    """The asset of ``dataset`` (an ORM ``Dataset``) named ``asset``, or the one holding
    every column in ``wanted``; ``NotFound``/``Invalid`` naming what there is."""
    from datasite.errors import NotFound

    assets = {a.name: a for a in dataset.assets}
    columns = {name: [c["name"] for c in a.columns] for name, a in assets.items()}
    if asset is not None:
        if asset not in assets:
            raise NotFound(
                f"Dataset {dataset.name!r} has no asset {asset!r}. Assets: {', '.join(assets)}."
            )
        found = asset
    else:
        holding = [n for n, cols in columns.items() if not unknown_columns(cols, wanted)]
        if len(holding) > 1:
            raise Invalid(f"Several assets hold these columns; name one: {', '.join(holding)}.")
        if not holding:
            held = "; ".join(f"{n}: {', '.join(cols)}" for n, cols in columns.items())
            raise Invalid(
                f"Unknown column(s): no asset of {dataset.name!r} holds "
                f"{', '.join(map(repr, wanted))}. Columns: {held}."
            )
        found = holding[0]
    missing = unknown_columns(columns[found], wanted)
    if missing:
        raise Invalid(
            f"Unknown column(s) {', '.join(map(repr, missing))} in asset {found!r}; its "
            f"columns are {', '.join(columns[found])}."
        )
    return assets[found]
