"""A k-anonymous copy of a real table (anjana's generalisation), for its owner.

The library first (``datasite.generalisation``) on scikit-learn's diabetes and breast
cancer tables, every result measured again by pycanon; then the site: the owner's route,
client and CLI, the audit event, and bad input that gets a clear error and no event.
"""

from __future__ import annotations

import itertools
from collections import Counter

import pandas as pd
import pytest
from pycanon import anonymity as pycanon
from sklearn.datasets import load_breast_cancer, load_diabetes
from typer.testing import CliRunner

from datasite.client.http import DatasiteError
from datasite.errors import Invalid
from datasite.generalisation import STAR, default_hierarchy, generalise
from tests.conftest import cli_as_owner

_NAMES = itertools.count()
DIABETES = load_diabetes(as_frame=True, scaled=False).frame
CANCER = load_breast_cancer(as_frame=True).frame


def patients() -> pd.DataFrame:
    """Diabetes with a made-up name and a five-digit postcode per patient (direct and
    quasi-identifiers that the real table lacks), deterministic."""
    frame = DIABETES.copy()
    frame["sex"] = frame["sex"].astype("int64")
    frame.insert(0, "name", [f"patient-{i}" for i in range(len(frame))])
    frame["postcode"] = [f"{10100 + (i * 37) % 90:05d}" for i in range(len(frame))]
    return frame


def test_diabetes_reaches_k_and_pycanon_agrees() -> None:
    real = patients()
    qis = ["age", "sex", "postcode"]
    assert pycanon.k_anonymity(real, qis) == 1  # every patient is unique on the QIs
    made = generalise(real, qis, k=10, identifiers=["name"], max_suppressed_percent=5)
    assert made.report.k >= 10 and made.report.passes
    assert pycanon.k_anonymity(made.table, qis) == made.report.k
    assert made.suppressed <= 0.05 * len(real) and len(made.table) == len(real) - made.suppressed
    assert (made.table["name"] == STAR).all()
    assert made.levels["age"] >= 1 and list(made.table.columns) == list(real.columns)
    # The other columns are the real rows' own values, row by row (none made up).
    others = [c for c in real.columns if c not in [*qis, "name"]]
    released = Counter(map(tuple, made.table[others].to_numpy().tolist()))
    assert not released - Counter(map(tuple, real[others].to_numpy().tolist()))


def test_l_diversity_on_breast_cancer() -> None:
    real = CANCER.copy()
    qis = ["mean radius", "mean texture"]
    made = generalise(real, qis, k=20, sensitive="target", l=2, max_suppressed_percent=2)
    assert made.report.k >= 20 and made.report.l >= 2
    assert pycanon.l_diversity(made.table, qis, ["target"]) == made.report.l
    assert pycanon.k_anonymity(made.table, qis) == made.report.k


def test_an_owners_hierarchy_is_used_and_an_unmapped_value_is_named() -> None:
    frame = pd.DataFrame({"ward": ["a1", "a2", "b1", "b2"] * 5, "dx": list("xyxyz") * 4})
    level = {"a1": "A", "a2": "A", "b1": "B", "b2": "B"}
    made = generalise(
        frame, ["ward"], k=10, hierarchies={"ward": [level]}, max_suppressed_percent=0
    )
    assert sorted(set(made.table["ward"])) == ["A", "B"] and made.levels == {"ward": 1}
    with pytest.raises(Invalid, match=r"level 1, has no label for 1 value\(s\): 'b2'"):
        generalise(frame, ["ward"], k=10, hierarchies={"ward": [{"a1": "A", "a2": "A", "b1": "B"}]})


def test_default_hierarchies_widen_intervals_and_cut_codes() -> None:
    ages = default_hierarchy(pd.Series([31, 38, 52]))
    assert list(ages[1]) == ["[30, 32)", "[38, 40)", "[52, 54)"] and list(ages[-1]) == [STAR] * 3
    widths = [len(set(level)) for level in ages]
    assert widths == sorted(widths, reverse=True)  # each level is coarser
    assert [list(x) for x in default_hierarchy(pd.Series(["F", "M"]))] == [["F", "M"], [STAR] * 2]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"quasi_identifiers": ["postcode"], "k": 0}, "at least 1"),
        ({"quasi_identifiers": ["zip"], "k": 2}, "Unknown column(s) 'zip'"),
        ({"quasi_identifiers": ["age"], "k": 2, "sensitive": "target"}, "both a sensitive"),
        ({"quasi_identifiers": ["age", "age"], "k": 2}, "each column once"),
        ({"quasi_identifiers": ["age"], "k": 2, "hierarchies": {"bmi": []}}, "not QIs"),
        ({"quasi_identifiers": ["age"], "k": 500, "max_suppressed_percent": 0}, "cannot be"),
    ],
)
def test_bad_settings_are_named(arguments: dict, message: str) -> None:
    with pytest.raises(Invalid) as refused:
        generalise(patients(), **arguments)
    assert message in str(refused.value)


# --- the site ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def study(inprocess_study_clients):  # type: ignore[no-untyped-def]
    owner, researcher = inprocess_study_clients
    real = patients()
    mock = real.sample(frac=1.0, random_state=2).reset_index(drop=True)
    mock["age"] = 50.0
    name = f"Generalise {next(_NAMES)}"
    owner.datasets.upload(name=name, assets={"table": (real, mock)}, progress=False)
    return owner, researcher, name


def test_the_owner_gets_a_k_anonymous_copy_and_the_audit_says_so(study) -> None:  # type: ignore[no-untyped-def]
    owner, researcher, name = study
    table, report = owner.datasets.generalise(
        name, ["age", "sex", "postcode"], k=10, identifiers=["name"]
    )
    assert report["k"] >= 10 and report["passes"] and report["asset"] == "table"
    assert pycanon.k_anonymity(table, ["age", "sex", "postcode"]) == report["k"]
    assert len(table) == report["rows"] == len(DIABETES) - report["suppressed"]
    assert (table["name"] == STAR).all()
    event = owner.audit(target_id=name)[0]
    assert event["action"] == "dataset_generalised"
    assert event["detail"]["k"] == 10 and event["detail"]["suppressed"] == report["suppressed"]
    with pytest.raises(DatasiteError) as forbidden:
        researcher.session.post(
            f"/datasets/{name}/generalise", json={"quasi_identifiers": ["age"], "k": 2}
        )
    assert forbidden.value.status == 403


def test_bad_input_is_a_clear_422_and_leaves_no_event(study) -> None:  # type: ignore[no-untyped-def]
    owner, _, name = study
    before = owner.audit(target_id=name)
    for body, message in [
        ({"quasi_identifiers": ["postcode", "zip"], "k": 5}, "'zip'"),
        ({"quasi_identifiers": [], "k": 5}, "quasi_identifiers"),
        ({"quasi_identifiers": ["age"], "k": 0}, "k"),
        ({"quasi_identifiers": ["age"], "k": 2, "code": "x"}, "code"),
        ({"quasi_identifiers": ["age"], "k": 1000, "max_suppressed_percent": 0}, "cannot be"),
    ]:
        with pytest.raises(DatasiteError) as refused:
            owner.session.post(f"/datasets/{name}/generalise", json=body)
        assert refused.value.status == 422 and message in str(refused.value), body
    with pytest.raises(DatasiteError) as missing:
        owner.datasets.generalise("No such dataset", ["age"], k=2)
    assert missing.value.status == 404
    assert owner.audit(target_id=name) == before


def test_the_cli_writes_the_copy(inprocess_site, study, monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from datasite.cli import app

    _, _, name = study
    cli_as_owner(monkeypatch, inprocess_site.url)
    out = tmp_path / "k10.parquet"
    args = ["datasets", "generalise", name, "--qi", "age", "--qi", "sex", "--k", "10"]
    done = CliRunner().invoke(app, [*args, "--out", str(out), "--identifier", "name"])
    assert done.exit_code == 0, done.output
    assert f"to {out}" in done.output and "meets the required k=10" in done.output
    assert pycanon.k_anonymity(pd.read_parquet(out), ["age", "sex"]) >= 10
    refused = CliRunner().invoke(app, [*args[:-1], "0", "--out", str(out)])
    assert refused.exit_code == 2 and "greater than or equal to 1" in refused.output
