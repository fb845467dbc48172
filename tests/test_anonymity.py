"""k-anonymity and l-diversity on real tables (scikit-learn's diabetes and breast cancer).

The library (``datasite.anonymity``) against pycanon and a plain pandas ``groupby``; then
the site: a mock with k=1 on the declared quasi-identifiers is refused at upload with its
smallest groups named and nothing stored; the owner's report by API and CLI; unknown
columns; a row-level output withheld below k on the real run.
"""

from __future__ import annotations

import itertools

import pandas as pd
import pytest
from pycanon import anonymity as pycanon
from sklearn.datasets import load_breast_cancer, load_diabetes
from typer.testing import CliRunner

from datasite.anonymity import check_anonymity, row_level_qis
from datasite.client.http import DatasiteError
from datasite.errors import Invalid
from policies.schema import Policy
from tests.conftest import RESEARCHER_EMAIL, cli_as_owner
from tests.flows import approve_as_owner, submit_source, wait_state

_NAMES = itertools.count()
DIABETES = load_diabetes(as_frame=True, scaled=False).frame
CANCER = load_breast_cancer(as_frame=True).frame


def diabetes_banded() -> pd.DataFrame:
    frame = DIABETES.copy()
    frame["sex"] = frame["sex"].astype("int64")
    frame["ageband"] = pd.cut(frame["age"], [0, 25, 40, 55, 70, 100]).astype(str)
    return frame


def cancer_banded() -> pd.DataFrame:
    frame = CANCER.copy()
    frame["radius_band"] = pd.cut(frame["mean radius"], [0, 10, 12, 14, 17, 20, 30]).astype(str)
    frame["texture_band"] = pd.cut(frame["mean texture"], [0, 15, 20, 25, 40]).astype(str)
    return frame


def groupby_k_l(frame: pd.DataFrame, qis: list[str], sensitive: str) -> tuple[int, int]:
    grouped = frame.groupby(qis, dropna=False, observed=True)
    return int(grouped.size().min()), int(grouped[sensitive].nunique(dropna=False).min())


# --- the library ------------------------------------------------------------------------

CASES = [
    ("diabetes", diabetes_banded, ["age", "sex"], "target"),
    ("diabetes", diabetes_banded, ["sex", "ageband"], "s4"),
    ("diabetes", diabetes_banded, ["ageband", "sex", "s4"], "target"),
    ("cancer", cancer_banded, ["radius_band", "texture_band"], "target"),
    ("cancer", cancer_banded, ["radius_band", "mean radius"], "target"),
]


@pytest.mark.parametrize(("data", "make", "qis", "sensitive"), CASES)
def test_pycanon_and_the_groupby_agree_on_real_tables(data, make, qis, sensitive) -> None:  # type: ignore[no-untyped-def]
    frame = make()
    expected = groupby_k_l(frame, qis, sensitive)
    assert (pycanon.k_anonymity(frame, qis), pycanon.l_diversity(frame, qis, [sensitive])) == (
        expected
    )
    for engine in ("pycanon", "pandas"):
        report = check_anonymity(frame, qis, [sensitive], k=5, engine=engine)
        assert (report.k, report.l) == expected, engine
        assert report.engine == engine
    assert check_anonymity(frame, qis, [sensitive]).cross_checked is True


def test_the_report_names_the_smallest_groups_with_their_sizes() -> None:
    frame = diabetes_banded()
    sizes = frame.groupby(["sex", "ageband"]).size().sort_values(kind="stable")
    report = check_anonymity(frame, ["sex", "ageband"], k=10)
    assert report.k == 5 and report.groups == len(sizes) and report.rows == 442
    assert [g.size for g in report.smallest] == sizes.iloc[:5].tolist()
    for group in report.smallest:
        assert sizes[(group.values["sex"], group.values["ageband"])] == group.size
    assert report.groups_below_k == int((sizes < 10).sum()) == 3
    assert report.rows_below_k == int(sizes[sizes < 10].sum())
    assert report.passes is False
    assert report.summary() == (
        "k=5 on sex, ageband (10 groups in 442 rows); is below the required k=10 "
        "(3 groups, 18 rows under it)"
    )
    assert check_anonymity(frame, ["sex", "ageband"], k=5).passes is True


def test_missing_values_and_any_index_are_groups_of_their_own() -> None:
    """pycanon mixes labels with positions and leaves a missing QI to pandas' groupby
    (which drops the row or keeps it, by pandas version); the site hands it integer codes,
    so a lone missing value is a group of one."""
    frame = diabetes_banded().set_index(pd.RangeIndex(1000, 1442))
    frame.loc[1000, "ageband"] = None
    with pytest.raises(IndexError):
        pycanon.l_diversity(frame, ["sex", "ageband"], ["target"])  # labels used as positions
    report = check_anonymity(frame, ["sex", "ageband"], ["target"], engine="pycanon")
    assert (report.k, report.l, report.cross_checked) == (1, 1, True)
    assert report.smallest[0].values["ageband"] is None and report.smallest[0].size == 1


def test_unknown_columns_and_empty_names_are_refused() -> None:
    with pytest.raises(Invalid, match=r"Unknown column\(s\) 'postcode'"):
        check_anonymity(DIABETES, ["age", "postcode"])
    with pytest.raises(Invalid, match="at least one"):
        check_anonymity(DIABETES, [])
    with pytest.raises(Invalid, match="named once"):
        check_anonymity(DIABETES, ["age"], sensitive=["age"])


def test_which_outputs_count_as_rows() -> None:
    policy = Policy(k_anonymity_qis=["sex", "ageband"])
    frame = diabetes_banded()
    assert row_level_qis(frame[["sex", "ageband", "bmi"]], policy) == ["sex", "ageband"]
    assert row_level_qis(frame["sex"], policy) == ["sex"]
    assert row_level_qis(pd.crosstab(frame["sex"], frame["ageband"]), policy) == []
    assert row_level_qis(frame.groupby("sex")["bmi"].mean(), policy) == []
    assert row_level_qis(frame[["bmi"]], policy) == []
    assert row_level_qis(frame[["sex"]], Policy()) == []


# --- on the site ------------------------------------------------------------------------


def _name() -> str:
    return f"Anon{next(_NAMES)}"


def _state(owner, site):  # type: ignore[no-untyped-def]
    root = site.settings.assets_dir
    stored = sorted(p.relative_to(root) for p in root.rglob("*")) if root.exists() else []
    return [d["name"] for d in owner.datasets.list()], stored


@pytest.mark.parametrize(
    ("make", "qis"),
    [(diabetes_banded, ["age", "sex"]), (cancer_banded, ["mean radius", "mean texture"])],
)
def test_a_mock_with_k_1_is_refused_at_upload_and_nothing_is_stored(  # type: ignore[no-untyped-def]
    inprocess_site, inprocess_study_clients, make, qis
) -> None:
    owner, _ = inprocess_study_clients
    real = make()
    mock = real.sample(frac=1.0, random_state=3).reset_index(drop=True)
    sizes = mock.groupby(qis).size()
    assert sizes.min() == 1
    before = _state(owner, inprocess_site)
    session = owner.session
    real_up = session.upload_table(real, "real", False)["upload_id"]
    mock_up = session.upload_table(mock, "mock", False)["upload_id"]
    name = _name()
    body = {
        "name": name,
        "assets": [{"name": "table", "real_upload": real_up, "mock_upload": mock_up}],
        "policy": {"k_anonymity_qis": qis, "min_group_size": 5},
    }
    with pytest.raises(DatasiteError) as refused:
        session.post("/datasets", json=body)
    message = str(refused.value)
    assert refused.value.status == 422
    assert f"Asset 'table': the mock is 1-anonymous on {', '.join(qis)}" in message
    assert "policy asks for k=5" in message and "Smallest groups: (" in message
    smallest = message.split("Smallest groups: ")[1]
    assert smallest.count(": 1 row") == 5  # five groups of one, named by their values
    first = next(iter(smallest.split("), (")))
    for qi in qis:
        assert f"{qi}=" in first
    assert _state(owner, inprocess_site) == before  # no dataset, no asset file
    assert not [e for e in owner.audit(target_id=name)]
    uploads = inprocess_site.settings.uploads_dir
    assert (uploads / f"{real_up}.parquet").exists()  # the real table's upload is kept
    # The same real upload with a coarser mock: one shared value per QI (k = its rows).
    coarse = mock.copy()
    for qi in qis:
        coarse[qi] = coarse[qi].iloc[0]
    body["assets"][0]["mock_upload"] = session.upload_table(coarse, "mock", False)["upload_id"]
    created = session.post("/datasets", json=body)
    assert created["name"] == name and created["assets"][0]["mock_rows"] == len(coarse)
    assert owner.policies.get(name)["k_anonymity_qis"] == qis
    assert [e["action"] for e in owner.audit(target_id=name)][::-1][:2] == [
        "dataset_uploaded",
        "policy_set",
    ]


@pytest.fixture(scope="module")
def diabetes(inprocess_site, inprocess_study_clients):  # type: ignore[no-untyped-def]
    """Diabetes with a mock whose age band is one shared value (k on sex, ageband >= 200),
    under a policy declaring sex and ageband as quasi-identifiers with k=10."""
    owner, researcher = inprocess_study_clients
    real = diabetes_banded()
    mock = real.sample(frac=1.0, random_state=1).reset_index(drop=True)
    mock["ageband"] = "(40, 55]"
    name = _name()
    owner.datasets.upload(
        name=name,
        assets={"table": (real, mock)},
        progress=False,
        policy={"k_anonymity_qis": ["sex", "ageband"], "min_group_size": 10},
    )
    owner.budgets.grant(RESEARCHER_EMAIL, name, epsilon=20.0)
    return owner, researcher, name


def test_the_owner_report_on_real_and_mock(diabetes) -> None:  # type: ignore[no-untyped-def]
    owner, researcher, name = diabetes
    real = diabetes_banded()
    report = owner.datasets.check_anonymity(name, sensitive=["target"])  # the policy's QIs
    assert (report["asset"], report["side"], report["quasi_identifiers"]) == (
        "table",
        "real",
        ["sex", "ageband"],
    )
    assert (report["k"], report["l"]) == groupby_k_l(real, ["sex", "ageband"], "target")
    assert report["k"] == 5 and report["required_k"] == 10 and report["passes"] is False
    assert report["engine"] == "pycanon" and report["cross_checked"] is True
    sizes = real.groupby(["sex", "ageband"]).size().sort_values(kind="stable")
    assert [g["size"] for g in report["smallest"]] == sizes.iloc[:5].tolist()
    assert report["smallest"][0]["values"] == dict(
        zip(["sex", "ageband"], sizes.index[0], strict=True)
    )
    other = owner.datasets.check_anonymity(name, quasi_identifiers=["age", "sex"], k=2)
    assert other["k"] == 1 and other["passes"] is False
    mock = owner.datasets.check_anonymity(name, k=10, side="mock")
    assert mock["side"] == "mock" and mock["k"] >= 10 and mock["passes"] is True
    with pytest.raises(DatasiteError) as forbidden:
        researcher.session.get(f"/datasets/{name}/anonymity")
    assert forbidden.value.status == 403


def test_unknown_columns_are_a_clear_422(diabetes) -> None:  # type: ignore[no-untyped-def]
    owner, _, name = diabetes
    with pytest.raises(DatasiteError) as unknown:
        owner.datasets.check_anonymity(name, quasi_identifiers=["sex", "postcode"])
    assert unknown.value.status == 422
    assert "'postcode'" in str(unknown.value) and "Columns: table: age, sex" in str(unknown.value)
    with pytest.raises(DatasiteError) as asset:
        owner.datasets.check_anonymity(name, quasi_identifiers=["postcode"], asset="table")
    assert asset.value.status == 422 and "Unknown column(s) 'postcode' in asset" in str(asset.value)
    with pytest.raises(DatasiteError) as side:
        owner.session.get(f"/datasets/{name}/anonymity", params={"side": "both"})
    assert side.value.status == 422
    with pytest.raises(DatasiteError) as policy:  # a QI no asset holds, at policy time
        owner.policies.set(name, k_anonymity_qis=["postcode"])
    assert policy.value.status == 422 and "'postcode' are no column" in str(policy.value)


def test_a_policy_the_stored_mock_does_not_meet_is_refused(diabetes) -> None:  # type: ignore[no-untyped-def]
    owner, _, name = diabetes
    before = owner.policies.get(name)
    with pytest.raises(DatasiteError) as refused:
        owner.policies.set(name, k_anonymity_qis=["age", "sex"])
    assert refused.value.status == 422 and "the mock is 1-anonymous on age, sex" in str(
        refused.value
    )
    assert owner.policies.get(name) == before


def test_the_cli_report(inprocess_site, diabetes, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from datasite.cli import app

    _, _, name = diabetes
    cli_as_owner(monkeypatch, inprocess_site.url)
    login: list[str] = []
    runner = CliRunner()
    below = runner.invoke(app, ["datasets", "anonymity", name, *login])
    assert below.exit_code == 1, below.output
    assert "table (real): k=5 on sex, ageband (10 groups in 442 rows)" in below.output
    assert "is below the required k=10" in below.output
    assert "(0, 25]" in below.output  # the smallest groups' values: the owner's
    meets = runner.invoke(app, ["datasets", "anonymity", name, "--k", "5", *login])
    assert meets.exit_code == 0 and "meets the required k=5" in meets.output
    mock = runner.invoke(app, ["datasets", "anonymity", name, "--side", "mock", *login])
    assert mock.exit_code == 0 and "table (mock): k=" in mock.output
    unknown = runner.invoke(app, ["datasets", "anonymity", name, "--qi", "postcode", *login])
    assert unknown.exit_code == 1 and "'postcode'" in unknown.output


def test_the_dataset_page_shows_the_mocks_k(inprocess_site, diabetes) -> None:  # type: ignore[no-untyped-def]
    from datasite.web.session import SESSION_COOKIE

    owner, _, name = diabetes
    page = inprocess_site.client.get(
        f"/datasets/{name}", headers={"Cookie": f"{SESSION_COOKIE}={owner.session.token}"}
    )
    assert page.status_code == 200, page.text[:300]
    assert "Mock k-anonymity: k=" in page.text and "on sex, ageband" in page.text


ROWS = """
def rows(df):
    return df[["sex", "ageband", "bmi"]]
"""


def _run(site, source: str, entry: str, **policy):  # type: ignore[no-untyped-def]
    owner, researcher, name = site
    owner.policies.set(name, non_dp_outputs="allow", **policy)
    request_id = submit_source(
        researcher.session, source, entry, epsilon=1.0, dataset=name, bindings={"df": "table"}
    )
    approve_as_owner(owner.session, request_id)
    wait_state(owner.session, request_id, ("released", "withheld", "failed"))
    return request_id, owner.requests.get(request_id).runs[-1]


def test_a_row_level_output_below_k_is_withheld(diabetes) -> None:  # type: ignore[no-untyped-def]
    owner, researcher, _ = diabetes
    request_id, run = _run(diabetes, ROWS, "rows", min_group_size=10)
    assert run["state"] == "withheld", run["error_detail"]
    assert (
        "output is a row-level table 5-anonymous on sex, ageband, below the policy's k=10"
        in (run["error_detail"])
    )
    assert "output: row-level table, k=5 on sex, ageband" in run["error_detail"]
    seen = researcher.request(request_id)
    assert seen.data["runs"][-1].get("error_detail") is None  # the detail is the owner's


def test_a_row_level_output_at_k_is_released_unchanged(diabetes) -> None:  # type: ignore[no-untyped-def]
    owner, researcher, _ = diabetes
    request_id, run = _run(diabetes, ROWS, "rows", min_group_size=5)
    assert run["state"] == "released", run["error_detail"]
    got = researcher.request(request_id).result()
    want = diabetes_banded()[["sex", "ageband", "bmi"]]
    assert got.reset_index(drop=True).equals(want.reset_index(drop=True))
    assert "meets the required k=5" in run["error_detail"]


def test_the_policy_form_refuses_what_the_mock_does_not_meet(inprocess_site, diabetes) -> None:  # type: ignore[no-untyped-def]
    import re

    from datasite.web.policy_form import form_fields
    from datasite.web.session import SESSION_COOKIE

    owner, _, name = diabetes
    before = owner.policies.get(name)
    cookie = {"Cookie": f"{SESSION_COOKIE}={owner.session.token}"}
    page = inprocess_site.client.get(f"/datasets/{name}", headers=cookie).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    shown = {k: v for k, v in before.items() if k != "version"}
    posted = {
        f.name: ("on" if f.checked else None) if f.kind == "checkbox" else f.value
        for f in form_fields(Policy, shown)
    }
    posted = {k: v for k, v in posted.items() if v is not None}
    posted.update({"csrf_token": token, "k_anonymity_qis": "age\nsex"})
    answer = inprocess_site.client.post(
        f"/datasets/{name}/policy", data=posted, headers=cookie, follow_redirects=False
    )
    assert answer.status_code == 422
    assert "the mock is 1-anonymous on age, sex" in answer.text
    assert owner.policies.get(name) == before
    posted["k_anonymity_qis"] = "sex\nageband"  # what the mock meets: saved
    saved = inprocess_site.client.post(
        f"/datasets/{name}/policy", data=posted, headers=cookie, follow_redirects=False
    )
    assert saved.status_code == 303, saved.text[:500]


def test_auto_leaves_large_tables_to_the_groupby(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import datasite.anonymity as anonymity

    frame = diabetes_banded()
    assert check_anonymity(frame, ["sex", "ageband"]).engine == "pycanon"
    monkeypatch.setattr(anonymity, "PYCANON_MAX_GROUPS", 5)  # 10 groups: too many now
    report = check_anonymity(frame, ["sex", "ageband"], ["target"])
    assert (report.engine, report.cross_checked, report.k) == ("pandas", None, 5)
    assert check_anonymity(frame, ["sex", "ageband"], engine="pycanon").cross_checked is True


def test_the_cli_upload_with_a_policy_refuses_a_1_anonymous_mock(  # type: ignore[no-untyped-def]
    inprocess_site, inprocess_study_clients, monkeypatch, tmp_path
) -> None:
    from datasite.cli import app

    owner, _ = inprocess_study_clients
    cli_as_owner(monkeypatch, inprocess_site.url)
    real = cancer_banded()
    real.to_parquet(tmp_path / "real.parquet")
    real.sample(frac=1.0, random_state=4).to_parquet(tmp_path / "mock.parquet")
    (tmp_path / "policy.yaml").write_text(
        "k_anonymity_qis: [radius_band, mean texture]\nmin_group_size: 3\n"
    )
    name = _name()
    args = ["datasets", "upload", name, "--real", str(tmp_path / "real.parquet")]
    args += ["--mock", str(tmp_path / "mock.parquet"), "--policy", str(tmp_path / "policy.yaml")]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 1, refused.output
    assert "the mock is 1-anonymous on radius_band, mean texture" in refused.output
    assert "Smallest groups: (radius_band=" in refused.output
    assert name not in [d["name"] for d in owner.datasets.list()]
    (tmp_path / "policy.yaml").write_text("k_anonymity_qis: [radius_band]\nmin_group_size: 3\n")
    created = CliRunner().invoke(app, args)
    assert created.exit_code == 0, created.output
    assert owner.policies.get(name)["k_anonymity_qis"] == ["radius_band"]


def test_unhashable_values_are_grouped_by_their_text() -> None:
    frame = pd.DataFrame({"codes": [[1, 2], [1, 2], [3]], "sex": ["f", "f", "m"]})
    report = check_anonymity(frame, ["codes", "sex"], k=2)
    assert (report.k, report.groups, report.smallest[0].size) == (1, 2, 1)
