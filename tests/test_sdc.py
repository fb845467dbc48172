"""Disclosure control of non-DP outputs on real tables (scikit-learn's diabetes and wine).

Library rules first (``policies.sdc``, ``policies.membership``), then the same rules on
real runs through the in-process site: a failing cell is suppressed or the result
withheld per policy, a passing table is released unchanged, an overfit tree is withheld
with its attack AUC in the owner's detail while a diffprivlib model is released.
"""

from __future__ import annotations

import itertools
import re
import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes, load_wine

from policies.membership import attack_model
from policies.schema import Policy
from policies.sdc import SdcRules, check_table
from tests.conftest import RESEARCHER_EMAIL
from tests.flows import approve_as_owner, submit_source, wait_state

_UPLOADS = itertools.count()
DIABETES = load_diabetes(as_frame=True, scaled=False).frame
WINE = load_wine(as_frame=True).frame


def diabetes_banded() -> pd.DataFrame:
    frame = DIABETES.copy()
    frame["sex"] = frame["sex"].astype("int64")
    frame["ageband"] = pd.cut(frame["age"], [0, 25, 40, 55, 70, 100]).astype(str)
    return frame


def test_crosstab_small_cells_fail_threshold_and_are_suppressed() -> None:
    raw = diabetes_banded()
    table = pd.crosstab(raw["sex"], raw["ageband"])
    assert sorted(table.to_numpy().ravel())[:3] == [5, 6, 7]  # the real table's small cells
    check = check_table(table, SdcRules(threshold=10), raw)
    assert {(tuple(f.row), f.column, f.rule) for f in check.findings} == {
        (("2",), "(0, 25]", "threshold"),
        (("1",), "(70, 100]", "threshold"),
        (("2",), "(70, 100]", "threshold"),
    }
    assert int(check.table.isna().to_numpy().sum()) == 3
    kept = check.table.to_numpy() == check.table.to_numpy()
    assert (check.table.to_numpy()[kept] == table.to_numpy()[kept]).all()
    assert check.findings[0].describe() == "output: cell (1) column (70, 100] fails threshold"


def test_frequency_table_without_raw_rows_uses_its_own_counts_and_rounding() -> None:
    table = pd.DataFrame({"a": [12, 3], "b": [40, 11]}, index=pd.Index(["x", "y"], name="g"))
    check = check_table(table, SdcRules(threshold=10, suppress_at_or_below=7, round_to=5))
    assert {f.rule for f in check.findings} == {"threshold", "small_number"}
    assert check.table.fillna(-1).to_numpy().tolist() == [[10.0, 40.0], [-1.0, 10.0]]


def test_dominated_cell_is_caught_from_the_raw_rows() -> None:
    raw = WINE[["target", "proline"]].copy()
    raw["target"] = raw["target"].astype("int64")
    raw.loc[raw.index[0], "proline"] = 1_000_000.0  # one winery dominates class 0's total
    sums = raw.groupby("target")["proline"].sum()
    check = check_table(sums, SdcRules(threshold=10), raw)
    assert [(f.row, f.rule) for f in check.findings] == [(["0"], "dominance"), (["0"], "p_ratio")]
    clean = check_table(
        WINE.assign(target=WINE.target.astype("int64")).groupby("target")["proline"].sum(),
        SdcRules(threshold=10),
        WINE.assign(target=WINE.target.astype("int64")),
    )
    assert clean.findings == [] and clean.changed is False


def test_a_magnitude_table_not_tied_to_raw_columns_is_unverifiable() -> None:
    means = pd.Series([1.5, 2.25], index=pd.Index(["a", "b"], name="nowhere"), name="x")
    check = check_table(means, SdcRules(), DIABETES)
    assert [f.rule for f in check.findings] == ["unverifiable"]


def test_membership_attack_separates_overfit_tree_from_dp_model() -> None:
    from diffprivlib.models import LinearRegression
    from sklearn.tree import DecisionTreeRegressor

    rows = DIABETES.iloc[:400]
    x = rows.drop(columns="target")
    tree = attack_model(DecisionTreeRegressor().fit(x, rows["target"]), rows)
    bounds = (x.min().to_numpy(), x.max().to_numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dp = LinearRegression(epsilon=1.0, bounds_X=bounds, bounds_y=(0, 400)).fit(
            x, rows["target"]
        )
    private = attack_model(dp, rows)
    assert tree.label == "target" and tree.auc > 0.9 and tree.advantage > 0.8
    assert private.label == "target" and abs(private.auc - 0.5) < 0.1


# --- real runs on the in-process site ---------------------------------------------------

CROSSTAB = """
import pandas as pd

def table(df):
    return {"by_age": pd.crosstab(df["sex"], df["ageband"])}
"""
PASSING = """
import pandas as pd

def table(df):
    return pd.crosstab(df["sex"], df["ageband"])
"""
TREE = """
from sklearn.tree import DecisionTreeRegressor

def fit(df):
    rows = df.iloc[:400]
    return DecisionTreeRegressor().fit(rows.drop(columns=["ageband"]).drop(columns="target"),
                                       rows["target"])
"""
DP_MODEL = """
from diffprivlib.models import LinearRegression

def fit(df):
    rows = df.iloc[:400]
    x = rows.drop(columns=["ageband", "target"])
    model = LinearRegression(epsilon=1.0, bounds_X=(x.min().to_numpy(), x.max().to_numpy()),
                             bounds_y=(0, 400))
    return model.fit(x, rows["target"])
"""


@pytest.fixture
def diabetes_site(inprocess_site, inprocess_study_clients):  # type: ignore[no-untyped-def]
    owner, researcher = inprocess_study_clients
    real = diabetes_banded()
    mock = real.sample(frac=1.0, random_state=1).reset_index(drop=True)
    mock["age"] = mock["age"].sample(frac=1.0, random_state=2).to_numpy()
    name = f"Diabetes{next(_UPLOADS)}"
    owner.datasets.upload(
        name=name, assets={"table": (real, mock)}, description="d", progress=False
    )
    owner.budgets.grant(RESEARCHER_EMAIL, name, epsilon=20.0)
    return owner, researcher, name


def _run(site, source: str, entry: str, epsilon: float = 1.0, **policy):  # type: ignore[no-untyped-def]
    owner, researcher, name = site
    owner.policies.set(name, non_dp_outputs="allow", **policy)
    request_id = submit_source(
        researcher.session,
        source,
        entry,
        epsilon=epsilon,
        dataset=name,
        bindings={"df": "table"},
    )
    approve_as_owner(owner.session, request_id)
    wait_state(owner.session, request_id, ("released", "withheld", "failed"))
    run = dict(owner.requests.get(request_id).runs[-1])
    run["error_detail"] = run.get("error_detail") or ""
    return request_id, SimpleNamespace(**run)


def test_run_suppresses_the_small_cells_per_policy(diabetes_site) -> None:  # type: ignore[no-untyped-def]
    owner, researcher, _ = diabetes_site
    request_id, run = _run(diabetes_site, CROSSTAB, "table")
    assert run.state == "released", run.error_detail
    table = researcher.request(request_id).result()["by_age"]
    assert int(table.isna().to_numpy().sum()) == 3
    assert "cell (2) column (0, 25] fails threshold" in run.error_detail


def test_run_is_withheld_when_the_policy_says_withhold(diabetes_site) -> None:  # type: ignore[no-untyped-def]
    owner, researcher, _ = diabetes_site
    _, run = _run(diabetes_site, CROSSTAB, "table", sdc={"on_fail": "withhold"})
    assert run.state == "withheld"
    assert "fails disclosure control" in run.error_detail
    assert "column (70, 100] fails threshold" in run.error_detail


def test_a_passing_table_is_released_unchanged(diabetes_site) -> None:  # type: ignore[no-untyped-def]
    owner, researcher, _ = diabetes_site
    request_id, run = _run(diabetes_site, PASSING, "table", min_group_size=5)
    assert run.state == "released"
    got = researcher.request(request_id).result()
    real = diabetes_banded()
    assert got.to_numpy().tolist() == pd.crosstab(real["sex"], real["ageband"]).to_numpy().tolist()


def test_overfit_tree_is_withheld_and_dp_model_released(diabetes_site) -> None:  # type: ignore[no-untyped-def]
    owner, researcher, _ = diabetes_site
    _, tree = _run(diabetes_site, TREE, "fit")
    assert tree.state == "withheld"
    auc = float(re.search(r"membership-attack AUC (\d\.\d+)", tree.error_detail).group(1))
    assert auc >= 0.9, tree.error_detail  # a full-depth tree: 0.9 to 1.0 by the split
    _, dp = _run(diabetes_site, DP_MODEL, "fit", epsilon=2.0)
    assert dp.state == "released", dp.error_detail
    assert "diffprivlib" in dp.error_detail and "AUC 0." in dp.error_detail


def test_policy_defaults_follow_acro() -> None:
    rules = Policy().sdc_rules()
    assert (rules.threshold, rules.dominance_n, rules.dominance_k, rules.p_ratio) == (
        10,
        2,
        0.9,
        0.1,
    )
    assert Policy(min_group_size=5).sdc_rules().threshold == 5
    assert np.isclose(Policy().mia_max_auc, 0.6)
