"""The dataset page's policy in a browser (Debian's chromium through Playwright): every
input of the owner's form is described by its help text, the reviewer's read-only list
carries the same help, and no raw docstring reaches the page."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests import test_web_review as review
from tests.conftest import REVIEWER_EMAIL, REVIEWER_PASSWORD
from tests.server import OWNER_EMAIL, OWNER_PASSWORD
from tests.test_web_review import sign_in

site, browser, page = review.site, review.browser, review.page

pytestmark = [pytest.mark.integration, pytest.mark.browser]


def test_every_policy_input_is_described_by_its_help(site, page: Page) -> None:  # type: ignore[no-untyped-def]
    sign_in(page, site["url"], OWNER_EMAIL, OWNER_PASSWORD, "/datasets/Pings")
    inputs = page.locator(".policy-form input:not([type=hidden]), .policy-form select, "
                          ".policy-form textarea")  # fmt: skip
    count = inputs.count()
    assert count > 20
    for i in range(count):
        described = inputs.nth(i).get_attribute("aria-describedby") or ""
        help_id = next((d for d in described.split() if d.endswith("-help")), None)
        assert help_id, inputs.nth(i).get_attribute("name")
        expect(page.locator(f"#{help_id}")).to_have_text(re.compile(r"\w.{18,}"))
    body = page.locator("main").inner_text()
    assert "``" not in body and ":data:" not in body


def test_the_reviewer_reads_the_same_help(site, page: Page) -> None:  # type: ignore[no-untyped-def]
    sign_in(page, site["url"], REVIEWER_EMAIL, REVIEWER_PASSWORD, "/datasets/Pings")
    expect(page.locator(".policy-form")).to_have_count(0)
    expect(page.locator("dl.facts p.help")).to_have_count(page.locator("dl.facts dt").count())
    expect(page.locator("#policy-non_dp_outputs-help")).to_contain_text("differentially private")
