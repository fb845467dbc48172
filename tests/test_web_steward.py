"""The request page as a data steward reads it (Debian's chromium through Playwright).

A plain-language summary of what the request computes and releases comes before the
code; jargon carries its explanation; a blocked request shows no green "fits" badge; and
what a run on the private data printed (stdout, traceback) is the owner's to read, only
after opening it, never a reviewer's.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests import test_web_review as review
from tests.conftest import REVIEWER_EMAIL, REVIEWER_PASSWORD
from tests.flows import approve_as_owner, submit_source, wait_state
from tests.server import OWNER_EMAIL, OWNER_PASSWORD
from tests.test_web_review import BLOCKED, sign_in, submit

# The review tests' fixtures: their server, clients, browser and page.
site, browser, page = review.site, review.browser, review.page

pytestmark = [pytest.mark.integration, pytest.mark.browser]

BLIND_MEAN = """\
def mean_age(df):
    from researcher_kit import dp

    return dp.mean(df["age"], bounds=(18, 90), epsilon=0.5)
"""

# Prints real rows, then fails: its stdout holds private values, and its traceback
# could (a repr of a row in an error's text, a local in a frame).
LEAKY_FAILURE = """\
def peek(df):
    print("SECRET" + "-ROWS", df.head(3).to_string())
    raise ValueError("peek is done")
"""


def test_summary_says_what_a_blind_request_releases_before_the_code(site, page: Page) -> None:
    request_id = submit_source(
        site["researcher"].session,
        BLIND_MEAN,
        "mean_age",
        project="Web review",
        kind="blind",
        mechanisms=["researcher_kit.dp.mean"],
    )
    wait_state(site["owner"].session, request_id, ("checked", "approved", "released"))
    sign_in(page, site["url"], REVIEWER_EMAIL, REVIEWER_PASSWORD, f"/requests/{request_id}")
    summary = page.locator("#plain-summary")
    expect(summary).to_contain_text("Data-blind")
    expect(summary).to_contain_text("a noisy mean of column `age`, clamped to 18-90, epsilon 0.5")
    # Before the code, and jargon explained where it stands.
    order = page.evaluate("() => [...document.querySelectorAll('h2')].map(h => h.id)")
    assert order.index("summary-heading") < order.index("code-heading")
    expect(page.locator("abbr[title*='privacy loss']").first).to_be_attached()
    expect(page.locator("abbr[title*='already released']").first).to_be_attached()


def test_summary_of_raw_request_and_no_green_badge_over_blocked(site, page: Page) -> None:
    request_id = submit(site, BLOCKED, "row_count")
    sign_in(page, site["url"], REVIEWER_EMAIL, REVIEWER_PASSWORD, f"/requests/{request_id}")
    expect(page.locator("#plain-summary")).to_contain_text("Reads raw rows")
    expect(page.locator("#verdict")).to_have_text("blocked")
    expect(page.locator(".badge.ok", has_text="fits")).to_have_count(0)
    expect(page.get_by_role("region", name="Privacy budget")).to_contain_text(
        "the checker blocks this request"
    )


def _failed_leaky_run(site: dict[str, Any]) -> int:
    request_id = submit_source(
        site["researcher"].session, LEAKY_FAILURE, "peek", project="Web review", epsilon=0.1
    )
    approve_as_owner(site["owner"].session, request_id)
    wait_state(site["owner"].session, request_id, ("failed", "released", "withheld"))
    return request_id


@pytest.fixture(scope="module")
def leaky(site) -> int:  # type: ignore[no-untyped-def]
    return _failed_leaky_run(site)


def test_reviewer_never_sees_run_output_or_traceback(site, leaky: int, page: Page) -> None:
    sign_in(page, site["url"], REVIEWER_EMAIL, REVIEWER_PASSWORD, f"/requests/{leaky}")
    runs = page.get_by_role("region", name="Runs on the private data")
    expect(runs).to_be_visible()
    expect(page.locator("#run-output-owner-only")).to_contain_text("only the data owner")
    html = page.content()
    assert "SECRET-ROWS" not in html
    assert "Traceback" not in html
    expect(page.locator("details.run-output")).to_have_count(0)


def test_owner_sees_run_output_only_after_opening_it(site, leaky: int, page: Page) -> None:
    sign_in(page, site["url"], OWNER_EMAIL, OWNER_PASSWORD, f"/requests/{leaky}")
    details = page.locator("details.run-output")
    expect(details).to_have_count(1)
    expect(details).not_to_have_attribute("open", "")
    expect(page.get_by_text("SECRET-ROWS")).not_to_be_visible()
    details.locator("summary").click()
    expect(details.get_by_text("SECRET-ROWS")).to_be_visible()
    expect(details).to_contain_text("Traceback")
