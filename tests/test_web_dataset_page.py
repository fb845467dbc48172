"""The dataset page as its owner and a reviewer read it: the policy is introduced in
plain words (never the model's raw docstring, with its ``code`` and :roles:), and every
policy field, in the owner's form and in the reviewer's read-only list, carries its help.

Read through the in-process site's HTTP client, signed in by cookie.
"""

from __future__ import annotations

import re

import pytest

from datasite import admin
from datasite.web.policy_form import form_fields, form_intro
from datasite.web.session import SESSION_COOKIE
from policies.schema import DEFAULT_POLICY, Policy
from tests.conftest import REVIEWER_EMAIL, REVIEWER_PASSWORD

pytestmark = pytest.mark.integration

#: What a docstring written for code shows when it reaches a page raw.
RAW_DOCSTRING = re.compile(r"``|:(data|class|func|meth|attr|mod):`|>>> ")


def test_every_policy_field_has_help_and_the_intro_is_for_people() -> None:
    fields = form_fields(Policy, DEFAULT_POLICY.model_dump(mode="json"))
    assert len(fields) > 20  # nested settings included
    assert [f.name for f in fields if len(f.help) < 20] == []
    assert not RAW_DOCSTRING.search(form_intro(Policy))
    assert not [f.name for f in fields if RAW_DOCSTRING.search(f.help)]
    labels = [f.label for f in fields]
    assert "Non-DP outputs" in labels and "Sdc" not in {f.group for f in fields}


@pytest.mark.parametrize("who", ["owner", "reviewer"])
def test_the_dataset_page_shows_help_for_every_field_and_no_docstring(
    who, inprocess_site, inprocess_study_clients
) -> None:  # type: ignore[no-untyped-def]
    owner, _ = inprocess_study_clients
    session = (
        owner.session
        if who == "owner"
        else admin.connect(inprocess_site.url, REVIEWER_EMAIL, REVIEWER_PASSWORD).session
    )
    page = inprocess_site.client.get(
        "/datasets/Pings", headers={"Cookie": f"{SESSION_COOKIE}={session.token}"}
    )
    assert page.status_code == 200
    text = page.text
    assert not RAW_DOCSTRING.search(text), RAW_DOCSTRING.search(text)
    for f in form_fields(Policy, DEFAULT_POLICY.model_dump(mode="json")):
        assert f'id="{f.input_id}-help"' in text, f.name
    assert "Each field says what it does." in text
    assert ("policy-form" in text) == (who == "owner")  # the reviewer reads, never edits
