"""The plots as a person sees them (Debian's chromium through Playwright): budget use over
time on the ledger page, and a released result's error bars on the request page, drawn
inline (the pages' Content-Security-Policy allows no script and no inline style).
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests import test_web_review as review
from tests.conftest import RESEARCHER_EMAIL
from tests.flows import approve_as_owner, submit_source, wait_state
from tests.server import OWNER_EMAIL, OWNER_PASSWORD
from tests.test_web_review import screenshot, sign_in

# The review tests' fixtures: their server, clients, browser and page.
site, browser, page = review.site, review.browser, review.page

pytestmark = [pytest.mark.integration, pytest.mark.browser]

COUNTS = """\
def counts(df):
    from researcher_kit import dp

    return {
        "users": dp.count(df, epsilon=0.25),
        "by_gender": dp.histogram(df["gender"], epsilon=0.25, categories=["MALE", "FEMALE"]),
    }
"""


@pytest.fixture(scope="module")
def released(site) -> int:  # type: ignore[no-untyped-def]
    site["owner"].budgets.grant(RESEARCHER_EMAIL, "Pings", epsilon=9.0)
    request_id = submit_source(
        site["researcher"].session, COUNTS, "counts", epsilon=0.5, kind="blind",
        project="Web review",
    )  # fmt: skip
    approve_as_owner(site["owner"].session, request_id)
    assert wait_state(site["owner"].session, request_id, ("released", "failed")).state == (
        "released"
    )
    return request_id


def test_the_request_page_shows_error_bars(site, released: int, page: Page) -> None:  # type: ignore[no-untyped-def]
    sign_in(page, site["url"], OWNER_EMAIL, OWNER_PASSWORD, f"/requests/{released}")
    charts = page.locator("#error-bars-1 svg[role=img]")
    expect(charts).to_have_count(2)  # the count, and the histogram's three bins
    expect(charts.first).to_be_visible()
    expect(page.locator("#error-bars-1 g.bar")).to_have_count(4)
    expect(page.locator("#error-bars-1 figcaption").first).to_contain_text("19 times in 20")
    box = charts.nth(1).bounding_box()
    assert box is not None and box["width"] > 150 and box["height"] > 100
    review.ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#error-bars-1").screenshot(path=str(review.ARTIFACTS / "request-error-bars.png"))


def test_the_ledger_plots_budget_use_over_time(site, released: int, page: Page) -> None:  # type: ignore[no-untyped-def]
    sign_in(page, site["url"], OWNER_EMAIL, OWNER_PASSWORD, "/ledger")
    charts = page.locator("#budget-charts svg.chart")
    expect(charts).to_have_count(2)
    for chart in (charts.first, charts.nth(1)):
        expect(chart).to_be_visible()
        expect(chart.locator("polyline").first).to_be_attached()
    expect(page.locator("#budget-charts .legend").first).to_contain_text(RESEARCHER_EMAIL)
    expect(page.locator("#budget-charts .legend").nth(1)).to_contain_text("Pings")
    screenshot(page, "ledger-charts.png")
