"""Plots on the pages, drawn server-side as inline SVG (no script, no CDN): budget use over
time per researcher and per dataset on the ledger page, and a released result's noise as
error bars on the request page, where the kit knows the noise's scale.

Pages are read through the in-process site's HTTP client, signed in by cookie.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

import pytest

from datasite.contract.job import JobResult
from datasite.contract.results import encode_result
from datasite.error_bars import error_bars, half_width_95
from datasite.runs import _with_error_bars
from datasite.web.charts import budget_over_time, error_bar_chart, line_chart
from datasite.web.session import SESSION_COOKIE
from tests.conftest import RESEARCHER_EMAIL
from tests.flows import approve_as_owner, submit_source, wait_state

pytestmark = pytest.mark.integration

RELEASES = """\
def releases(df):
    from researcher_kit import dp

    n = dp.count(df, epsilon=0.25)
    by_gender = dp.histogram(df["gender"], epsilon=0.25, categories=["MALE", "FEMALE"])
    mean = dp.mean(df["age"], bounds=(18, 90), epsilon=0.25)
    shifted = dp.count(df, epsilon=0.25) + 0.5  # changed: a half never equals a count
    return {"patients": n, "by_gender": by_gender, "mean_age": mean, "shifted": shifted}
"""

COUNT_LEDGER = {"helper": "count", "mechanism": "laplace", "epsilon": 0.5, "scale": 2.0}


def test_a_returned_release_gets_its_95_percent_interval_and_nothing_else_does() -> None:
    ledger = [{**COUNT_LEDGER, "details": {"released": 445}}]
    bars = error_bars({"n": 445, "n_plus_one": 446, "same_again": 445.0}, ledger)
    assert [b["path"] for b in bars] == ["output['n']", "output['same_again']"]
    assert bars[0]["half_width"] == pytest.approx(2.0 * math.log(20))
    assert half_width_95("gaussian", 1.0) == pytest.approx(1.96, abs=1e-3)
    assert half_width_95("exponential", 1.0) is None  # a quantile's selection: no bar
    assert error_bars(445, [COUNT_LEDGER]) == []  # no released value kept: no match


def test_the_releaser_keeps_what_it_released_for_counts_sums_histograms_and_context() -> None:
    import numpy as np
    import pandas as pd

    from researcher_kit import dp
    from researcher_kit.blind import local_frames

    table = pd.DataFrame({"bmi": np.random.default_rng(0).uniform(15, 45, 500)})
    df = local_frames({"df": table}, 1.0)["df"]
    n = dp.count(df, epsilon=0.5)
    mean = dp.mean(df["bmi"], bounds=(15.0, 45.0), epsilon=0.5)
    kept = [e.details.get("released") for e in df.channel.releaser.spent.entries]
    assert kept == [n, None]  # a mean is a ratio of two noised values: no single scale
    ctx = local_frames({"ctx": table}, 0.5, context=True, queries=2)["ctx"]
    patients = dp.ctx_count(ctx)
    dp.ctx_mean(ctx, "bmi", bounds=(15.0, 45.0))
    ledger = [e.to_dict() for e in ctx.channel.releaser.spent.entries]
    assert [e["details"].get("released") for e in ledger] == [patients, None]
    [bar] = error_bars({"patients": patients, "mean": mean}, ledger)
    assert bar["path"] == "output['patients']" and bar["scale"] == pytest.approx(4.0)


def test_only_a_data_blind_runs_ledger_draws_bars() -> None:
    manifest, blobs = encode_result({"n": 445})
    spend = [{**COUNT_LEDGER, "details": {"released": 445}}]
    result = JobResult(job_id="j", ok=True, manifest=manifest, blobs=blobs, spend=spend)
    assert _with_error_bars("blind", result)["noise"][0]["path"] == "output['n']"
    # A raw-data run's spend is recorded by its own code: it draws nothing.
    assert "noise" not in _with_error_bars("mechanism", result)


def test_charts_escape_names_and_need_no_inline_style() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    series = budget_over_time(
        [(start, "<script>x</script>", 0.5), (start + timedelta(hours=1), "bob", 1.0)]
    )
    svg = str(line_chart(series, title="Spent", ceiling=2.0))
    bar = error_bar_chart(
        {"path": "output", "helper": "count", "mechanism": "laplace", "scale": 2.0,
         "epsilon": 0.5, "half_width": 6.0, "points": [{"label": "<b>", "value": 445}]}
    )  # fmt: skip
    for markup in (svg, str(bar)):
        assert "<script>" not in markup and "<b>" not in markup
        assert "style=" not in markup  # the pages' CSP forbids inline style
    assert "&lt;script&gt;x&lt;/script&gt;: ε 0.5" in svg and "granted: ε 2" in svg
    assert "445 ± 6 (95%: 439 to 451)" in str(bar)


@pytest.fixture(scope="module")
def released(inprocess_site, inprocess_study_clients):  # type: ignore[no-untyped-def]
    owner, researcher = inprocess_study_clients
    owner.budgets.grant(RESEARCHER_EMAIL, "Pings", epsilon=3.0)
    request_id = submit_source(researcher.session, RELEASES, "releases", epsilon=1.0, kind="blind")
    wait_state(owner.session, request_id, ("checked", "released"))
    if owner.requests.get(request_id).state == "checked":
        approve_as_owner(owner.session, request_id)
    assert wait_state(owner.session, request_id, ("released", "failed")).state == "released"
    cookie = {"Cookie": f"{SESSION_COOKIE}={owner.session.token}"}
    return inprocess_site.client, cookie, request_id, researcher.request(request_id).result()


def test_the_request_page_draws_error_bars_on_returned_releases(released) -> None:  # type: ignore[no-untyped-def]
    client, cookie, request_id, outputs = released
    page = client.get(f"/requests/{request_id}", headers=cookie)
    assert page.status_code == 200
    block = page.text[page.text.index('id="error-bars-1"') :]
    block = block[: block.index("</div>")]
    assert block.count("<svg") == 2  # the count and the histogram; not the mean, not shifted
    assert f"patients: {outputs['patients']:,} ± " in block
    for gender in ("MALE", "FEMALE", "(other)"):
        assert f"{gender}: {outputs['by_gender'][gender]:,} ± " in block
    assert "output[&#39;mean_age&#39;]" not in block and "shifted" not in block
    assert "<script" not in page.text


def test_the_ledger_page_plots_budget_use_per_researcher_and_dataset(released) -> None:  # type: ignore[no-untyped-def]
    client, cookie, _, _ = released
    page = client.get("/ledger", headers=cookie).text
    charts = page[page.index('id="budget-charts"') :]
    assert "Per researcher" in charts and "Per dataset" in charts
    assert charts.count("<polyline") >= 2
    assert re.search(rf"{re.escape(RESEARCHER_EMAIL)}: ε 1(\.0)?<", charts)
    assert "Pings: ε 1" in charts
    one = client.get(
        "/ledger", params={"researcher": RESEARCHER_EMAIL, "dataset": "Pings"}, headers=cookie
    ).text
    assert "granted: ε 3" in one  # one budget on screen: its line is drawn


def test_every_bar_lands_inside_its_chart() -> None:
    bar = {
        "path": "output", "helper": "histogram", "mechanism": "laplace", "scale": 4.0,
        "epsilon": 0.25, "half_width": 12.0,
        "points": [{"label": "MALE", "value": 960}, {"label": "FEMALE", "value": 1040},
                   {"label": "(other)", "value": -3}],
    }  # fmt: skip
    svg = str(error_bar_chart(bar))
    height = int(re.search(r'viewBox="0 0 \d+ (\d+)"', svg).group(1))  # type: ignore[union-attr]
    ys = [float(y) for y in re.findall(r'<circle cx="[\d.]+" cy="(-?[\d.]+)"', svg)]
    ends = [float(y) for y in re.findall(r'y[12]="(-?[\d.]+)"', svg)]
    assert len(ys) == 3 and all(0 < y < height for y in ys + ends), (ys, ends)
    assert ys[1] < ys[0] < ys[2]  # FEMALE highest, "(other)" near zero lowest
