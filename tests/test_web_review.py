"""The review pages in a real browser (Debian's chromium through Playwright).

A real server process; the owner's and researcher's Python clients set up data and
submit code; reviewers and the owner then work only through the pages. Screenshots of
the queue and the request page go to ``test-artifacts/``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import (
    RESEARCHER_EMAIL,
    RESEARCHER_PASSWORD,
    REVIEWER_EMAIL,
    REVIEWER_PASSWORD,
    setup_site,
)
from tests.flows import submit_source, wait_state
from tests.server import OWNER_EMAIL, OWNER_PASSWORD

pytestmark = [pytest.mark.integration, pytest.mark.browser]

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# Returns the mean without noise: the checker flags the output; a reviewer denies it.
RAW_MEAN = """\
import numpy as np


def mean_age(df):
    ages = df["age"].clip(18, 90)
    return float(np.mean(ages))
"""

# Imports os: a blocking finding at line 1, so only the owner can override it.
BLOCKED = """\
import os


def row_count(df):
    return float(len(df)) + len(os.sep)
"""


@pytest.fixture(scope="module")
def site(shared_server) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    owner, researcher, _real, _mock = setup_site(shared_server.url)
    researcher.create_project("Web review")
    return {"url": shared_server.url, "owner": owner, "researcher": researcher}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()


def submit(site: dict[str, Any], source: str, entry: str, until: str = "checked") -> int:
    """Submit as the researcher and wait (as the owner) until the checker reported."""
    request_id = submit_source(site["researcher"].session, source, entry, project="Web review")
    wait_state(site["owner"].session, request_id, (until,))
    return request_id


def sign_in(page: Page, url: str, email: str, password: str, next_path: str = "/") -> None:
    page.goto(url + next_path)
    expect(page).to_have_url(re.compile(r"/login"))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def api_state(site: dict[str, Any], request_id: int) -> dict[str, Any]:
    return site["owner"].session.get(f"/requests/{request_id}")


def test_reviewer_reads_finding_at_its_line_and_denies(site, page: Page) -> None:
    request_id = submit(site, RAW_MEAN, "mean_age")
    report = api_state(site, request_id)["policy_report"]
    finding = next(f for f in report["findings"] if f.get("line"))

    sign_in(page, site["url"], REVIEWER_EMAIL, REVIEWER_PASSWORD)
    expect(page).to_have_url(re.compile(r"/queue$"))
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=f"#{request_id}"))
    expect(row).to_contain_text(RESEARCHER_EMAIL)
    expect(row).to_contain_text("Pings")
    expect(row).to_contain_text("ε 0.5")
    expect(row).to_contain_text(report["verdict"].replace("_", " "))
    screenshot(page, "web-queue.png")

    row.get_by_role("link", name=f"#{request_id}").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("mean_age")
    # The finding sits right under the line it is about, and the line has an anchor.
    line = finding["line"]
    expect(page.locator(f"#L{line}")).to_contain_text(RAW_MEAN.splitlines()[line - 1].strip())
    expect(page.locator(f"#L{line}-findings")).to_contain_text(finding["message"])
    page.get_by_role("link", name=f"line {line}", exact=True).first.click()
    expect(page).to_have_url(re.compile(rf"#L{line}$"))
    # Declared budget against what the researcher has left on the dataset.
    expect(page.locator("#budget-needed")).to_have_text("0.5")
    expect(page.locator("#budget-left")).not_to_be_empty()
    # The history shows the submission.
    expect(page.get_by_role("region", name="History")).to_contain_text("request submitted")
    screenshot(page, "web-request.png")

    reason = "The mean is released without noise; use rk.dp.mean with bounds."
    page.get_by_label("Reason (the researcher reads it)").fill(reason)
    page.get_by_role("button", name="Deny").click()
    expect(page.get_by_role("status")).to_contain_text("Denied")
    expect(page.locator("#deny-reason")).to_have_text(reason)

    seen = site["researcher"].request(request_id)
    assert seen.state == "denied"
    assert seen.deny_reason == reason
    events = site["owner"].audit(action="request_denied", target_id=str(request_id))
    assert events and events[0]["actor"] == REVIEWER_EMAIL and events[0]["address"]


def test_deny_without_reason_changes_nothing(site, page: Page) -> None:
    request_id = submit(site, RAW_MEAN, "mean_age")
    sign_in(page, site["url"], REVIEWER_EMAIL, REVIEWER_PASSWORD, f"/requests/{request_id}")
    page.get_by_role("button", name="Deny").click()
    expect(page.locator("#reason-error")).to_contain_text("Write the reason")
    expect(page.get_by_label("Reason (the researcher reads it)")).to_have_attribute(
        "aria-invalid", "true"
    )
    assert api_state(site, request_id)["state"] == "checked"


def test_owner_overrides_blocked_request_only_with_justification(site, page: Page) -> None:
    request_id = submit(site, BLOCKED, "row_count")
    assert api_state(site, request_id)["policy_report"]["verdict"] == "blocked"

    # A reviewer cannot override: the page says so and offers no approve button.
    sign_in(page, site["url"], REVIEWER_EMAIL, REVIEWER_PASSWORD, f"/requests/{request_id}")
    expect(page.get_by_role("region", name="Decision")).to_contain_text(
        "Only the data owner can override"
    )
    expect(page.get_by_role("button", name=re.compile("approve", re.I))).to_have_count(0)
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login"))

    sign_in(page, site["url"], OWNER_EMAIL, OWNER_PASSWORD, f"/requests/{request_id}")
    expect(page.locator("#L1-findings")).to_contain_text("os")
    approve = page.get_by_role("button", name="Override and approve")
    approve.click()
    expect(page.get_by_role("alert").first).to_contain_text("justification")
    expect(page.locator("#justification-error")).to_be_visible()
    assert api_state(site, request_id)["state"] == "checked"

    justification = "Reviewed by hand: os is only used for os.sep, which touches no data."
    page.get_by_label(re.compile("Justification")).fill(justification)
    page.get_by_role("button", name="Override and approve").click()
    expect(page.get_by_role("status")).to_contain_text("Approved")
    expect(page.locator("#override-justification")).to_have_text(justification)

    after = api_state(site, request_id)
    assert after["state"] in ("approved", "running", "released", "failed")
    assert after["override_justification"] == justification
    event = site["owner"].audit(action="request_approved", target_id=str(request_id))[0]
    assert event["actor"] == OWNER_EMAIL
    assert event["detail"]["override"] is True
    assert event["detail"]["justification"] == justification


def test_researcher_session_gets_403_on_every_review_page(site, page: Page) -> None:
    request_id = submit_source(
        site["researcher"].session, RAW_MEAN, "mean_age", project="Web review"
    )
    sign_in(page, site["url"], RESEARCHER_EMAIL, RESEARCHER_PASSWORD)
    for path in (
        "/queue",
        f"/requests/{request_id}",
        "/ledger",
        "/audit",
        "/datasets",
        "/datasets/Pings",
    ):
        response = page.goto(site["url"] + path)
        assert response is not None and response.status == 403, path
        expect(page.get_by_role("heading", level=1)).to_have_text("Not for your account")
    # Posting a decision with a valid CSRF token of the researcher's own session: 403 too.
    page.goto(site["url"] + "/logout")
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    response = page.request.post(
        f"{site['url']}/requests/{request_id}/deny",
        form={"csrf_token": token or "", "reason": "I deny myself"},
    )
    assert response.status == 403
    assert api_state(site, request_id)["state"] in ("submitted", "checked")


def test_reviewer_cannot_open_owner_pages(site, page: Page) -> None:
    sign_in(page, site["url"], REVIEWER_EMAIL, REVIEWER_PASSWORD)
    expect(page.get_by_role("link", name="Audit log")).to_have_count(0)
    response = page.goto(site["url"] + "/audit")
    assert response is not None and response.status == 403
    # The dataset page shows the policy read-only to a reviewer: no form to post.
    page.goto(site["url"] + "/datasets/Pings")
    expect(page.get_by_role("button", name="Save policy")).to_have_count(0)


def test_form_without_csrf_token_is_refused(site, page: Page) -> None:
    request_id = submit(site, RAW_MEAN, "mean_age")
    sign_in(page, site["url"], OWNER_EMAIL, OWNER_PASSWORD)
    url = f"{site['url']}/requests/{request_id}/deny"
    # From the browser context (the session cookie goes along): no token, wrong token.
    for form in ({"reason": "forged"}, {"reason": "forged", "csrf_token": "0" * 64}):
        response = page.request.post(url, form=form)
        assert response.status == 403
        assert "nothing was changed" in response.text()
    # And from httpx with the stolen session cookie but no token.
    cookie = next(c for c in page.context.cookies() if c["name"] == "datasite_session")
    response = httpx.post(url, data={"reason": "forged"}, cookies={cookie["name"]: cookie["value"]})
    assert response.status_code == 403
    assert api_state(site, request_id)["state"] == "checked"
    # The login form is bound to its page too.
    response = httpx.post(
        f"{site['url']}/login", data={"email": OWNER_EMAIL, "password": OWNER_PASSWORD}
    )
    assert response.status_code == 403 and "datasite_session" not in response.cookies


def test_session_cookie_and_sign_out(site, page: Page) -> None:
    sign_in(page, site["url"], OWNER_EMAIL, OWNER_PASSWORD)
    cookie = next(c for c in page.context.cookies() if c["name"] == "datasite_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""
    # The web session is an API token: it works as a bearer token until signed out.
    bearer = {"Authorization": f"Bearer {cookie['value']}"}
    assert httpx.get(f"{site['url']}/api/v1/auth/me", headers=bearer).status_code == 200
    expect(page.locator("html")).to_have_attribute("lang", "en")
    # The first Tab lands on the skip link, and it is visibly focused.
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login"))
    assert httpx.get(f"{site['url']}/api/v1/auth/me", headers=bearer).status_code == 401
    logins = site["owner"].audit(action="login", actor=OWNER_EMAIL)
    assert any(e["detail"].get("channel") == "web" and e["address"] for e in logins)


def test_wrong_password_shows_error(site, page: Page) -> None:
    sign_in(page, site["url"], REVIEWER_EMAIL, "not-the-password")
    expect(page.get_by_role("alert")).to_have_text("Wrong email or password.")
    expect(page.get_by_label("Email")).to_have_value(REVIEWER_EMAIL)


def test_ledger_and_audit_pages(site, page: Page) -> None:
    site["owner"].budgets.grant(RESEARCHER_EMAIL, "Pings", epsilon=7.5)
    sign_in(page, site["url"], OWNER_EMAIL, OWNER_PASSWORD, "/ledger")
    grants = page.locator("#grants")
    row = grants.get_by_role("row").filter(has_text=RESEARCHER_EMAIL)
    expect(row).to_contain_text("7.5")
    page.goto(site["url"] + "/audit")
    page.get_by_label("Action").select_option("budget_granted")
    page.get_by_role("button", name="Filter").click()
    table = page.locator("#audit-events")
    expect(table).to_contain_text("budget granted")
    expect(table).not_to_contain_text("dataset uploaded")


def test_dataset_page_preview_and_policy_validation(site, page: Page) -> None:
    owner = site["owner"]
    before = owner.policies.get("Pings")
    sign_in(page, site["url"], OWNER_EMAIL, OWNER_PASSWORD, "/datasets/Pings")
    # The mock preview: 20 rows, all mock ids (the mock's ids start at 10,000,000).
    preview = page.locator("table.mock-preview tbody tr")
    expect(preview).to_have_count(20)
    ids = [int(t) for t in preview.locator("td:first-child").all_inner_texts()]
    assert min(ids) >= 10_000_000

    field = page.get_by_label("Max epsilon per request")
    field.fill("-1")
    page.get_by_role("button", name="Save policy").click()
    expect(page.locator("#policy-max_epsilon_per_request-error")).to_contain_text("greater than 0")
    expect(page.get_by_label("Max epsilon per request")).to_have_value("-1")
    assert owner.policies.get("Pings")["version"] == before["version"]

    page.get_by_label("Max epsilon per request").fill("0.75")
    page.get_by_role("button", name="Save policy").click()
    expect(page.get_by_role("status")).to_contain_text("Policy saved")
    after = owner.policies.get("Pings")
    assert after["max_epsilon_per_request"] == 0.75
    assert {k: v for k, v in after.items() if k not in ("version", "max_epsilon_per_request")} == {
        k: v for k, v in before.items() if k not in ("version", "max_epsilon_per_request")
    }
    # Put the default back for the other tests of this module.
    owner.policies.set("Pings", max_epsilon_per_request=before["max_epsilon_per_request"])


UNLABELLED = """() => [...document.querySelectorAll(
    'input:not([type=hidden]), select, textarea')].filter(e => e.labels.length === 0)
    .map(e => e.name)"""
HEADERLESS_TABLES = (
    "() => [...document.querySelectorAll('table')].filter(t => !t.querySelector('th')).length"
)


def test_every_page_labels_its_inputs_and_heads_its_tables(site, page: Page) -> None:
    request_id = submit_source(
        site["researcher"].session, RAW_MEAN, "mean_age", project="Web review"
    )
    sign_in(page, site["url"], OWNER_EMAIL, OWNER_PASSWORD)
    for path in (
        "/queue",
        f"/requests/{request_id}",
        "/ledger",
        "/audit",
        "/datasets",
        "/datasets/Pings",
        "/login",
    ):
        response = page.goto(site["url"] + path)
        assert response is not None and response.ok, path
        assert page.evaluate(UNLABELLED) == [], path
        assert page.evaluate(HEADERLESS_TABLES) == 0, path
        assert page.locator("h1").count() == 1, path
