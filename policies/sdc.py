"""Statistical disclosure control for non-DP table outputs (ACRO's rules, OpenSAFELY's).

When a dataset's policy lets a raw-data request return outputs that are not DP, each
table it returns (DataFrame, Series, crosstab, groupby result) is checked on the real run
before release, cell by cell:

- ``threshold``: fewer than ``threshold`` rows make the cell (ACRO: 10);
- ``dominance``: the ``dominance_n`` largest contributions make up more than
  ``dominance_k`` of the cell's total (ACRO: n=2, k=0.90);
- ``p_ratio``: what is left after the two largest contributions is less than ``p_ratio``
  of the largest (ACRO: 0.10), so the second contributor could estimate the first;
- ``small_number`` (optional, OpenSAFELY): counts at or below ``suppress_at_or_below``
  (7) are redacted; ``round_to`` (5) rounds every released count.

What the released table alone shows, and what needs the raw rows:

- a *frequency* table (every cell a non-negative whole number, no raw rows known) is its
  own cell counts: threshold and small-number rules apply; dominance and p-ratio need
  contributions and do not apply to counts (each row contributes one);
- a *magnitude* table (sums, means, ...) says nothing about how many rows made a cell or
  who dominates it. With the raw rows (``raw``), the table's index names (and a
  crosstab's column-axis name) give the grouping columns, and a Series' name or a
  DataFrame's column names give the summarised variable: the cell counts come from a
  ``groupby(...).size()``, dominance and p-ratio from the variable's values per cell.
  The site has the raw rows on the server (``datasite.disclosure``), so it checks there.
  A magnitude table whose grouping or variable cannot be tied to the raw columns cannot
  be checked; it is reported as ``unverifiable`` and withheld for the owner.

Findings name the table, the cell's labels and the rule, never a value:

>>> import pandas as pd
>>> table = pd.DataFrame({"a": [12, 3], "b": [40, 11]}, index=pd.Index(["x", "y"], name="g"))
>>> check = check_table(table, SdcRules())
>>> [(f.row, f.column, f.rule) for f in check.findings]
[(['y'], 'a', 'threshold')]
>>> bool(check.table.loc["y", "a"] != check.table.loc["y", "a"])  # suppressed: NaN
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    import pandas as pd

OnFail = Literal["suppress", "withhold"]


class SdcRules(BaseModel):
    """The disclosure-control rules of a policy (``Policy.sdc``); defaults from ACRO.

    ``threshold`` None means ``Policy.min_group_size`` (see ``Policy.sdc_rules``).
    ``suppress_at_or_below`` and ``round_to`` are off unless set (OpenSAFELY uses 7 and 5).
    ``on_fail``: ``suppress`` blanks failing cells (NaN) and releases the rest;
    ``withhold`` holds the whole result for the owner.
    """

    model_config = ConfigDict(extra="forbid")

    threshold: int | None = Field(
        default=None,
        ge=1,
        description="A table cell counting fewer people than this fails. Empty: the "
        "policy's minimum group size.",
    )
    dominance_n: int = Field(
        default=2,
        ge=1,
        description="Dominance rule: a cell fails when its n largest contributors make "
        "up more than the share below of its total (n).",
    )
    dominance_k: float = Field(
        default=0.90,
        gt=0,
        le=1,
        description="Dominance rule: the share of a cell's total (0.9 = 90%) that its n "
        "largest contributors may not exceed.",
    )
    p_ratio: float = Field(
        title="P% ratio",
        default=0.10,
        ge=0,
        le=1,
        description="P% rule: a cell fails when the second-largest contributor could "
        "estimate the largest to within this fraction (0.1 = 10%).",
    )
    suppress_at_or_below: int | None = Field(
        default=None,
        ge=0,
        description="Blank every count at or below this (OpenSAFELY uses 7). Empty: off.",
    )
    round_to: int | None = Field(
        default=None,
        ge=1,
        description="Round every count to a multiple of this (OpenSAFELY uses 5). Empty: off.",
    )
    on_fail: OnFail = Field(
        default="suppress",
        description="What a failing cell does: suppress blanks it and releases the "
        "rest; withhold holds the whole result for the owner to decide.",
    )

    def cell_threshold(self) -> int:
        return self.threshold if self.threshold is not None else 10


@dataclass
class Finding:
    """One rule that fired on one cell (labels only, never the cell's value)."""

    table: str
    row: list[str]
    column: str | None
    rule: str

    def describe(self) -> str:
        where = ", ".join(self.row) or "-"
        col = f" column {self.column}" if self.column is not None else ""
        return f"{self.table}: cell ({where}){col} fails {self.rule}"


@dataclass
class TableCheck:
    """The checked table (failing cells suppressed, counts rounded if asked) and findings."""

    table: Any
    findings: list[Finding] = field(default_factory=list)
    kind: str = "frequency"
    changed: bool = False


def _labels(key: Any) -> list[str]:
    return [str(k) for k in key] if isinstance(key, tuple) else [str(key)]


def _is_frequency(frame: pd.DataFrame) -> bool:
    import numpy as np

    values = frame.to_numpy()
    if values.size == 0 or values.dtype.kind not in "iuf":
        return values.size == 0
    finite = values[~np.isnan(values.astype(float))]
    return bool(np.all(finite >= 0) and np.all(finite == np.round(finite)))


def _keys(frame: pd.DataFrame, raw: pd.DataFrame | None) -> tuple[list[str], str | None]:
    """The raw columns the table is grouped by (rows; column axis) or ([], None)."""
    if raw is None:
        return [], None
    names = [n for n in frame.index.names if n is not None]
    if not names or any(n not in raw.columns for n in names):
        return [], None
    column_key = frame.columns.name
    if column_key is not None and column_key not in raw.columns:
        return [], None
    return [str(n) for n in names], column_key


def cell_stats(
    raw: pd.DataFrame, keys: list[str], variable: str | None, rules: SdcRules
) -> pd.DataFrame:
    """Per cell of ``raw`` grouped by ``keys``: count, and with a ``variable`` whether it
    fails dominance and p-ratio (vectorised: one sort, one groupby)."""
    import numpy as np
    import pandas as pd

    frame = raw[keys + ([variable] if variable else [])].reset_index(drop=True)
    grouped = frame.groupby(keys, observed=True, dropna=False)
    stats = pd.DataFrame({"count": grouped.size()})
    if not variable:
        return stats
    values = frame[variable].astype(float).abs().fillna(0.0)
    ordered = frame[keys].assign(_v=values).sort_values("_v", ascending=False, kind="stable")
    by = ordered.groupby(keys, observed=True, dropna=False)["_v"]
    rank = by.cumcount()
    total = by.sum()
    top_n = (
        ordered["_v"]
        .where(rank < rules.dominance_n, 0.0)
        .groupby([ordered[k] for k in keys], observed=True, dropna=False)
        .sum()
    )
    first = (
        ordered["_v"]
        .where(rank == 0, 0.0)
        .groupby([ordered[k] for k in keys], observed=True, dropna=False)
        .sum()
    )
    second = (
        ordered["_v"]
        .where(rank == 1, 0.0)
        .groupby([ordered[k] for k in keys], observed=True, dropna=False)
        .sum()
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        stats["dominance"] = (total > 0) & (top_n / total > rules.dominance_k)
        rest = total - first - second
        stats["p_ratio"] = (total > 0) & (rest / first < rules.p_ratio)  # one row: 0, fails
    return stats


def _cell_counts(table: pd.DataFrame, stats: pd.DataFrame, keys: list[str], col_key: str | None):
    """Align per-cell stats with the table's cells: a frame like ``table`` per stat."""
    import pandas as pd

    if col_key is None:
        return {name: stats[name].reindex(table.index) for name in stats.columns}
    out = {}
    for name in stats.columns:
        wide = stats[name].unstack(col_key)
        wide = wide.reindex(index=table.index, columns=table.columns)
        out[name] = wide if isinstance(wide, pd.DataFrame) else wide.to_frame()
    return out


def check_table(
    table: pd.DataFrame | pd.Series,
    rules: SdcRules,
    raw: pd.DataFrame | None = None,
    name: str = "output",
) -> TableCheck:
    """Check one released table; ``raw`` (the real rows it came from) when available."""
    import numpy as np
    import pandas as pd

    series = isinstance(table, pd.Series)
    frame = (
        table.to_frame(name=table.name if table.name is not None else "value") if series else table
    )
    frame = frame.copy()
    keys, col_key = _keys(frame, raw)
    fails = pd.DataFrame(False, index=frame.index, columns=frame.columns)
    rule_of: dict[tuple[int, int], list[str]] = {}
    kind = "frequency" if _is_frequency(frame) else "magnitude"

    def mark(mask: Any, rule: str) -> None:
        mask = pd.DataFrame(np.asarray(mask, dtype=bool), index=frame.index, columns=frame.columns)
        for i, j in zip(*np.nonzero(mask.to_numpy()), strict=True):
            rule_of.setdefault((int(i), int(j)), []).append(rule)
        fails.iloc[:, :] = fails.to_numpy() | mask.to_numpy()

    threshold = rules.cell_threshold()
    if keys and raw is not None:
        if col_key is not None:  # a crosstab: counts per (row, column) cell
            stats = cell_stats(raw, keys + [col_key], None, rules)
            counts = _cell_counts(frame, stats, keys, col_key)["count"].fillna(0)
            mark(counts.to_numpy() < threshold, "threshold")
            if kind == "magnitude" or not np.allclose(
                frame.fillna(0).to_numpy(float), counts.to_numpy(float)
            ):
                kind = "magnitude"  # values of a variable we cannot name: threshold only
        else:
            for j, column in enumerate(frame.columns):
                variable = str(column) if str(column) in raw.columns else None
                stats = cell_stats(raw, keys, variable, rules)
                aligned = _cell_counts(frame, stats, keys, None)
                one = np.zeros(frame.shape, dtype=bool)
                one[:, j] = aligned["count"].fillna(0).to_numpy() < threshold
                mark(one, "threshold")
                counts = aligned["count"].fillna(0).to_numpy(float)
                is_count = np.allclose(frame.iloc[:, j].fillna(0).to_numpy(float), counts)
                if not is_count:
                    kind = "magnitude"
                if variable is not None and not is_count:
                    for rule in ("dominance", "p_ratio"):
                        one = np.zeros(frame.shape, dtype=bool)
                        one[:, j] = aligned[rule].fillna(False).to_numpy(bool)
                        mark(one, rule)
    elif kind == "frequency":
        values = frame.to_numpy(float)
        mark(np.nan_to_num(values, nan=threshold) < threshold, "threshold")
    else:
        return TableCheck(
            table=table,
            findings=[Finding(name, [], None, "unverifiable")],
            kind="magnitude",
        )
    if kind == "frequency" and rules.suppress_at_or_below is not None:
        values = frame.to_numpy(float)
        mark(np.nan_to_num(values, nan=np.inf) <= rules.suppress_at_or_below, "small_number")
    findings = []
    columns = [str(c) for c in frame.columns]
    for (i, j), fired in sorted(rule_of.items()):
        for rule in dict.fromkeys(fired):
            findings.append(
                Finding(name, _labels(frame.index[i]), None if series else columns[j], rule)
            )
    changed = False
    if rules.on_fail == "suppress" and fails.to_numpy().any():
        frame = frame.astype(float).mask(fails.to_numpy())
        changed = True
    if kind == "frequency" and rules.round_to is not None:
        frame = (frame.astype(float) / rules.round_to).round() * rules.round_to
        changed = True
    out = frame.iloc[:, 0].rename(table.name) if series else frame
    return TableCheck(
        table=out if changed else table, findings=findings, kind=kind, changed=changed
    )
