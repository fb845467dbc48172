"""``policies.sdc`` against ACRO itself, cell by cell, on real tables.

ACRO (the SACRO project's output checker, installed ``--no-deps``: it pins pandas 2) is
the reference the issue names. Both check the same tables of scikit-learn's diabetes and
wine data at ACRO's defaults (threshold 10, dominance n=2 k=0.90, p-ratio 0.10), and every
cell must fail the same rules in both. Two differences of form, not of substance:

- an empty cell of a frequency table: ACRO calls it ``PresenceOfZeroCheck`` (zeros are
  disclosive), ``policies.sdc`` calls it ``threshold`` (0 rows is fewer than 10);
- a magnitude table: ACRO's ``crosstab(values=..., aggfunc=...)`` lists every pair of
  categories, empty ones too, while the table a researcher returns here is the
  ``groupby(...).agg(...)`` that has only the cells with rows; the empty ones are compared
  as frequency cells above.
"""

from __future__ import annotations

import logging

import acro as acro_module  # `make install` adds it (--no-deps)
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes, load_wine

from policies.sdc import SdcRules, check_table

ACRO_RULES = {
    "MinimumThresholdCheck": "threshold",
    "PresenceOfZeroCheck": "threshold",
    "NKCheck": "dominance",
    "PPercentCheck": "p_ratio",
}


def diabetes() -> pd.DataFrame:
    frame = load_diabetes(as_frame=True, scaled=False).frame
    frame["sex"] = frame["sex"].astype("int64")
    frame["ageband"] = pd.cut(frame["age"], [0, 25, 40, 55, 70, 100]).astype(str)
    frame["bmiband"] = pd.cut(frame["bmi"], [0, 20, 25, 30, 35, 50]).astype(str)
    return frame


def wine() -> pd.DataFrame:
    frame = load_wine(as_frame=True).frame
    frame["alcband"] = pd.cut(frame["alcohol"], [0, 12, 13, 14, 15]).astype(str)
    frame["magband"] = pd.cut(frame["magnesium"], [0, 90, 100, 110, 200]).astype(str)
    return frame


TABLES = [
    (diabetes, "sex", "ageband", None, None),
    (diabetes, "ageband", "bmiband", None, None),
    (diabetes, "sex", "ageband", "target", "mean"),
    (diabetes, "ageband", "bmiband", "s5", "mean"),
    (diabetes, "sex", "bmiband", "target", "sum"),
    (wine, "target", "alcband", None, None),
    (wine, "target", "magband", "proline", "mean"),
    (wine, "alcband", "magband", "color_intensity", "sum"),
    (wine, "target", "alcband", "proline", "sum"),
]


def acro_findings(raw: pd.DataFrame, a: str, b: str, v: str | None, agg: str | None) -> set:
    """Every (row, column, rule) that ACRO's crosstab fails, in our rule names."""
    logging.disable(logging.CRITICAL)  # ACRO logs each table at INFO
    try:
        acro = acro_module.ACRO(suppress=False)
        acro.crosstab(raw[a], raw[b], values=raw[v] if v else None, aggfunc=agg)
    finally:
        logging.disable(logging.NOTSET)
    outcome = list(acro.results.results.values())[-1].outcome
    found = set()
    for row in outcome.index:
        for column in outcome.columns:
            checks = {c.strip() for c in str(outcome.loc[row, column]).split(";")}
            for check in checks - {"ok", ""}:
                found.add((str(row), str(column), ACRO_RULES.get(check, check)))
    return found


def our_findings(raw: pd.DataFrame, a: str, b: str, v: str | None, agg: str | None) -> set:
    """The same from ``policies.sdc``, on the table a researcher would return."""
    if v is None:
        check = check_table(pd.crosstab(raw[a], raw[b]), SdcRules(), raw)
        return {(f.row[0], f.column, f.rule) for f in check.findings}
    table = raw.groupby([a, b], observed=True)[v].agg(agg)
    check = check_table(table, SdcRules(), raw)
    assert check.kind == "magnitude"
    return {(f.row[0], f.row[1], f.rule) for f in check.findings}


@pytest.mark.parametrize(("make", "a", "b", "v", "agg"), TABLES)
def test_the_same_cells_fail_the_same_rules_as_in_acro(make, a, b, v, agg) -> None:  # type: ignore[no-untyped-def]
    raw = make()
    theirs, ours = acro_findings(raw, a, b, v, agg), our_findings(raw, a, b, v, agg)
    if v is not None:  # only the cells that have rows (see the module's text)
        present = {(str(x), str(y)) for x, y in raw.groupby([a, b], observed=True).size().index}
        theirs = {f for f in theirs if f[:2] in present}
    assert ours == theirs
    assert ours, "each table has at least one failing cell, so agreement means something"
