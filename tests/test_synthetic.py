"""DP synthetic data: the kit helper (blind and direct), owner uploads with a synthetic mock,
the quality report, the canary test, and a synthetic-data request that is auto-approved.

Small real tables (scikit-learn's bundled wine data, offline) and few bins keep it fast.
"""

from __future__ import annotations

import pandas as pd
import pytest

from researcher_kit import dp
from researcher_kit.blind import ReleaseError, local_frames
from researcher_kit.dp.synthetic import SynthesisRefused, plan_columns
from tests.conftest import needs

pytestmark = needs("mbi")

BOUNDS = {"alcohol": (10.0, 16.0), "proline": (200, 1800), "color_intensity": (0.0, 14.0)}
CLASSES = {"cultivar": ["a", "b", "c"]}


def wine() -> pd.DataFrame:
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame
    table = frame[["alcohol", "color_intensity"]].copy()
    table["proline"] = frame["proline"].round().astype("int64")
    table["cultivar"] = frame["target"].map({0: "a", 1: "b", 2: "c"}).astype(object)
    return table


def test_blind_synthesize_charges_the_odometer_and_keeps_the_columns() -> None:
    real = wine()
    frames = local_frames({"df": real}, epsilon=1.5)
    releaser = frames["df"].channel.releaser
    fake = dp.synthesize(
        frames["df"], epsilon=1.0, bounds=BOUNDS, public_categories=CLASSES, bins=4
    )
    assert list(fake.columns) == list(real.columns)
    assert releaser.budget.spent_epsilon == pytest.approx(1.0)
    assert [e.helper for e in releaser.spent.entries] == ["synthesize"]
    assert 100 < len(fake) < 260  # the model's DP total, near 178
    assert fake["proline"].between(200, 1800).all() and fake["proline"].dtype == "int64"
    assert set(fake["cultivar"].dropna()) <= {"a", "b", "c"}
    # the odometer refuses what is left over, before any data is read
    with pytest.raises(dp.BudgetExceeded):
        dp.synthesize(frames["df"], epsilon=1.0, bounds=BOUNDS, public_categories=CLASSES)
    assert releaser.budget.spent_epsilon == pytest.approx(1.0)


def test_bad_inputs_are_refused_before_any_spend() -> None:
    frames = local_frames({"df": wine()}, epsilon=5.0)
    releaser = frames["df"].channel.releaser
    with pytest.raises(ReleaseError, match="needs public bounds"):
        dp.synthesize(frames["df"], epsilon=1.0, bounds={"alcohol": (10, 16)}, bins=4)
    with pytest.raises(ReleaseError, match="have no public categories"):
        dp.synthesize(frames["df"], epsilon=1.0, bounds=BOUNDS, bins=4)
    with pytest.raises(SynthesisRefused, match="epsilon must be"):
        dp.synthesize(frames["df"], epsilon=0.0, bounds=BOUNDS, public_categories=CLASSES)
    assert releaser.budget.spent_epsilon == 0
    with pytest.raises(SynthesisRefused, match="cannot be synthesized"):
        plan_columns({"when": "datetime64[ns]"})
    with pytest.raises(SynthesisRefused, match="unknown column"):
        plan_columns({"a": "object"}, public_categories={"a": [1], "b": [2]})


# -- the site: an owner upload with a synthetic mock, the report, the canary, a request ----

SETTINGS = {"bounds": BOUNDS, "public_categories": CLASSES, "bins": 4, "target": "cultivar"}


@pytest.fixture(scope="module")
def synth_site(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A real server (its own process) with a small cell limit for synthetic mocks."""
    from datasite.client.embedded import EmbeddedSite
    from tests.server import OWNER_EMAIL, OWNER_PASSWORD

    server = EmbeddedSite(
        tmp_path_factory.mktemp("synth") / "site",
        owner_email=OWNER_EMAIL,
        owner_password=OWNER_PASSWORD,
        env={"DATASITE_NO_PROGRESS": "1", "DATASITE_MAX_SYNTHETIC_CELLS": "5000"},
    ).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def uploaded(synth_site):  # type: ignore[no-untyped-def]
    from tests.conftest import setup_site

    owner, researcher, _, _ = setup_site(synth_site.url)
    owner.datasets.upload(
        name="Wine",
        assets={"wine": wine()},
        mock="synthetic",
        mock_epsilon=1.0,
        mock_settings=SETTINGS,
        progress=False,
    )
    return owner, researcher


def test_an_upload_with_a_synthetic_mock_records_the_spend_against_the_dataset(
    uploaded,
) -> None:  # type: ignore[no-untyped-def]
    owner, researcher = uploaded
    real = wine()
    mock = owner.datasets.mock("Wine", "wine")
    assert list(mock.columns) == list(real.columns)
    numeric = ["alcohol", "color_intensity", "proline"]
    assert dict(mock[numeric].dtypes) == dict(real[numeric].dtypes)
    # strings of the real's categories; OpenDP's synthesizer may also draw a missing one
    # (its domain keeps a null; pandas 2 then holds the column as objects, pandas 3 as str)
    labels = mock["cultivar"].dropna()
    assert pd.api.types.is_string_dtype(labels) and set(labels) <= {"a", "b", "c"}
    assert 100 < len(mock) < 260 and not mock.equals(real)
    events = [e for e in owner.audit() if e["action"] == "synthetic_mock_released"]
    assert len(events) == 1 and events[0]["target_id"] == "Wine"
    assert events[0]["detail"]["epsilon"] == pytest.approx(1.0)
    assert events[0]["detail"]["spend"][0]["helper"] == "synthesize"
    # the researcher sees the synthetic mock, never the report
    assert len(researcher.datasets["Wine"].assets["wine"].mock) == len(mock)
    from datasite.client.http import DatasiteError

    with pytest.raises(DatasiteError) as refused:
        researcher.session.get("/datasets/Wine/synthetic-report")
    assert refused.value.status in (401, 403)


def test_the_quality_report_shows_the_baseline_and_what_touched_the_real_data(uploaded) -> None:  # type: ignore[no-untyped-def]
    owner, _ = uploaded
    report = owner.datasets.synthetic_report("Wine")
    assert set(report["tvd_1way"]) == set(wine().columns)
    assert 0 <= report["tvd_2way"] <= 1 and 0 <= report["tvd_2way_independent_baseline"] <= 1
    assert report["ml_utility"]["target"] == "cultivar"
    assert 0 <= report["ml_utility"]["train_real_test_real"] <= 1
    expected = 100 * (
        0.4 * (1 - report["tvd_1way_mean"])
        + 0.4 * (1 - report["tvd_2way"])
        + 0.2 * min(report["ml_utility"]["utility"], 1)
    )
    assert report["score"] == pytest.approx(expected, abs=0.06)
    assert "ml_utility" in report["touches_real_data"]
    assert report["svg"]["distributions"].startswith("<svg")
    assert report["svg"]["correlations"].count("<rect") == 2 * len(wine().columns) ** 2
    assert report["settings"]["epsilon"] == 1.0
    # the owner sees how each column reached the synthesizer (what they set at upload)
    scheme = {row["column"]: row for row in report["scheme"]}
    assert set(scheme) == set(wine().columns)
    assert scheme["cultivar"]["how"].startswith("public categories")
    assert scheme["cultivar"]["categories"] == 3
    assert "equal-width" in scheme["proline"]["how"]
    assert scheme["proline"]["edges"] == [200.0, 600.0, 1000.0, 1400.0, 1800.0]


def test_bad_synthetic_uploads_get_a_clear_error_and_no_audit_event(uploaded) -> None:  # type: ignore[no-untyped-def]
    from datasite.client.http import DatasiteError

    owner, _ = uploaded
    before = len(owner.audit())
    real = wine()
    dated = real.assign(when=pd.Timestamp("2020-01-01"))
    big = pd.concat([real] * 10, ignore_index=True)  # 1,780 x 4 > 5,000 cells
    cases = [
        (real, 0.0, SETTINGS, "greater than 0"),
        (dated, 1.0, SETTINGS, "cannot be synthesized"),
        (real, 1.0, {**SETTINGS, "bounds": {}}, "needs public bounds"),
        (big, 1.0, SETTINGS, "over this site's limit"),
        # the owner's binning and categories: a bad setting is named, nothing is fitted
        (real, 1.0, {**SETTINGS, "bounds": {**BOUNDS, "cultivar": (0, 2)}}, "categorical col"),
        (real, 1.0, {**SETTINGS, "public_categories": {"cultivar": []}}, "is empty"),
        (real, 1.0, {**SETTINGS, "binning": "deciles"}, "'uniform' or 'quantile'"),
        (real, 1.0, {**SETTINGS, "binning": "quantile", "quantile_share": 1.5}, "less than 1"),
        (real, 1.0, {**SETTINGS, "bounds": {**BOUNDS, "proline": (5, 5)}}, "lower < upper"),
    ]
    for table, epsilon, settings, message in cases:
        with pytest.raises(DatasiteError, match=message):
            owner.datasets.upload(
                name="Bad", assets={"t": table}, mock="synthetic", mock_epsilon=epsilon,
                mock_settings=settings, progress=False,
            )  # fmt: skip
    assert "Bad" not in {d["name"] for d in owner.datasets.list()}
    assert len(owner.audit()) == before


def test_the_canary_test_counts_replays_dp_and_non_dp(uploaded) -> None:  # type: ignore[no-untyped-def]
    owner, _ = uploaded
    result = owner.datasets.canary_test("Wine")
    assert result["column"] == "cultivar" and result["owner_only"]
    frequencies = [s["frequency"] for s in result["secrets"]]
    assert frequencies == [1, 5, 10, 50]
    dp_replays = [s["replays_dp"] for s in result["secrets"]]
    non_dp = [s["replays_non_dp"] for s in result["secrets"]]
    assert dp_replays[:2] == [0, 0]  # rare secrets never get through the DP threshold
    assert non_dp[-1] > 0  # without DP the frequent secret comes back
    assert any(e["action"] == "synthetic_canary_run" for e in owner.audit())


def test_a_synthetic_data_request_is_auto_approved(uploaded) -> None:  # type: ignore[no-untyped-def]
    import researcher_kit as rk
    from tests.conftest import RESEARCHER_EMAIL

    owner, researcher = uploaded
    # The dry-run fits a synthesizer on the mock: on a loaded CI machine that alone can take
    # the default 20 s, so this policy gives it more (the rule under test is the approval).
    owner.policies.set("Wine", auto_approve=True, max_epsilon_per_request=1.0,
                       audit={"dry_run_timeout_seconds": 120.0})  # fmt: skip
    owner.budgets.grant(RESEARCHER_EMAIL, "Wine", epsilon=1.0)
    wine_asset = researcher.datasets["Wine"].assets["wine"]

    @rk.dp_request(asset=wine_asset, epsilon=0.5)
    def fake_wine(df):  # type: ignore[no-untyped-def]
        from researcher_kit import dp

        return dp.synthesize(
            df, epsilon=0.5, bins=4,
            bounds={"alcohol": (10.0, 16.0), "proline": (200, 1800),
                    "color_intensity": (0.0, 14.0)},
            public_categories={"cultivar": ["a", "b", "c"]},
        )  # fmt: skip

    request = researcher.submit(fake_wine, project="Synthetic")
    request.wait(until=("released", "failed", "checked"))
    report = owner.requests.get(request.id).policy_report
    assert request.state == "released", (request.state, report.verdict, report.findings)
    table = request.result()
    assert list(table.columns) == list(wine().columns) and len(table) > 50
    actions = [e["action"] for e in owner.audit() if e["target_id"] == str(request.id)]
    assert "request_auto_approved" in actions
    grant = next(g for g in owner.budgets.list() if g["email"] == RESEARCHER_EMAIL)
    assert grant["spent_epsilon"] == pytest.approx(0.5)


def test_quantile_binning_uses_dp_edges_and_records_them_in_one_spend_entry() -> None:
    """``binning="quantile"``: the bin edges come from a DP histogram (not the bounds'
    equal widths), the synthetic values fall in those bins, and the spend is one entry
    for the whole epsilon (the quantiles' share inside it, not counted twice)."""
    import numpy as np

    rng = np.random.default_rng(3)
    # skewed inside wide public bounds: equal-width bins would put nearly all in one
    ages = np.clip(rng.gamma(2.0, 6.0, 3000) + 18, 18, 200).round().astype("int64")
    real = pd.DataFrame({"age": ages, "smoker": rng.choice(["y", "n"], 3000)})
    with dp.track() as spent:
        fake = dp.synthesize(
            real, epsilon=2.0, bounds={"age": (18, 200)}, public_categories={"smoker": ["y", "n"]},
            bins=5, binning="quantile", quantile_share=0.25, iterations=20, exact_integers=10,
        )  # fmt: skip
    assert [e.helper for e in spent.entries] == ["synthesize"]
    assert spent.epsilon == pytest.approx(2.0)
    details = spent.entries[0].details
    assert details["binning"] == "quantile"
    assert details["quantile_epsilon"] == pytest.approx(0.5)
    edges = details["bin_edges"]["age"]
    assert edges[0] == 18 and edges[-1] == 200 and edges == sorted(edges)
    # DP quantiles of a skewed column: the inner edges sit where the data is (the real
    # 80th percentile is about 42), far below the equal-width edges (54.4, 90.8, ...)
    assert 3 <= len(edges) - 1 <= 5 and max(edges[1:-1]) < 60
    assert all(float(e).is_integer() for e in edges)  # an integer column's cells
    # every synthetic value lies in one of the edges' bins; an integer column stays one
    assert fake["age"].dtype == "int64" and fake["age"].between(18, 200).all()
    assert (fake["age"] <= edges[-2]).mean() > 0.5  # mass where the DP edges put it


def test_the_column_scheme_names_dp_edges_kept_integers_and_discovered_categories() -> None:
    from datasite.synthetic_mock import column_scheme

    dtypes = {"age": "int64", "income": "float64", "sex": "object", "town": "object"}
    settings = {
        "bounds": {"age": (17, 90), "income": (0, 1e6)},
        "public_categories": {"sex": ["f", "m"]},
        "binning": "quantile",
        "bins": 4,
        "quantile_share": 0.2,
        "delta": 1e-6,
    }
    details = {"bin_edges": {"income": [0.0, 1e4, 3e4, 8e4, 1e6]}}
    scheme = {r["column"]: r for r in column_scheme(dtypes, settings, details)}
    assert scheme["age"]["how"].startswith("every integer")  # 73 values < exact_integers
    assert "DP quantiles" in scheme["income"]["how"] and "20% of epsilon" in scheme["income"]["how"]
    assert scheme["income"]["edges"] == details["bin_edges"]["income"]
    assert scheme["sex"]["categories"] == 2
    assert "thresholded" in scheme["town"]["how"]
    with pytest.raises(SynthesisRefused, match="categorical"):
        column_scheme(dtypes, {**settings, "bounds": {**settings["bounds"], "sex": (0, 1)}})
