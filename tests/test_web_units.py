"""The review pages' building blocks, without a server: highlighting, the policy form,
the site secret and CSRF tokens, and reading policy reports."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

from datasite.web.auth_pages import safe_next
from datasite.web.highlight import highlighted_lines, place_findings
from datasite.web.policy_form import form_fields, parse_form
from datasite.web.report_view import report_view
from datasite.web.session import csrf_ok, csrf_token, load_secret, login_csrf_ok, login_csrf_token
from policies.report import PolicyReport
from policies.schema import DEFAULT_POLICY, Policy

SOURCE = '''def f(df):
    """A docstring
    over <two> lines & more."""
    return df["age"].mean()  # <script>alert(1)</script>
'''


def test_highlighted_lines_keep_numbering_across_multiline_tokens_and_escape() -> None:
    lines = highlighted_lines(SOURCE)
    assert [line.number for line in lines] == [1, 2, 3, 4]
    third = str(lines[2].html)
    assert "&lt;two&gt;" in third and "&amp;" in third
    assert '<span class="sd">' in str(lines[1].html) and '<span class="sd">' in third
    assert "<script>" not in "".join(str(line.html) for line in lines)
    # Every line is balanced markup on its own, so a finding row can follow any line.
    for line in lines:
        assert str(line.html).count("<span") == str(line.html).count("</span>")


def test_findings_land_on_their_lines_or_in_the_unplaced_list() -> None:
    lines = highlighted_lines(SOURCE)
    findings = [
        {"line": 4, "severity": "warning", "message": "raw mean"},
        {"line": 4, "severity": "blocking", "message": "not DP"},
        {"line": None, "severity": "info", "message": "general"},
        {"line": 99, "severity": "info", "message": "out of range"},
    ]
    unplaced = place_findings(lines, findings)
    assert [f["message"] for f in lines[3].findings] == ["not DP", "raw mean"]
    assert [f["message"] for f in unplaced] == ["general", "out of range"]


def _posted(policy: Policy) -> dict[str, str]:
    """What a browser posts for a form showing ``policy`` unchanged."""
    return {
        f.name: f.value
        for f in form_fields(Policy, policy.model_dump(mode="json"))
        if f.kind != "checkbox" or f.checked
    }


def test_policy_form_round_trips_the_policy_unchanged() -> None:
    policy = Policy(max_epsilon_per_request=0.25, auto_approve=True, non_dp_outputs="block")
    document, errors = parse_form(Policy, _posted(policy))
    assert errors == {}
    assert Policy.model_validate(document) == policy


def test_policy_form_reports_errors_per_field_nested_ones_included() -> None:
    posted = _posted(DEFAULT_POLICY)
    posted.update({"max_epsilon_per_request": "abc", "audit.max_trials": "3"})
    posted.pop("auto_approve", None)  # an unchecked box is simply absent
    _document, errors = parse_form(Policy, posted)
    assert errors["max_epsilon_per_request"] == "'abc' is not a number."
    assert "greater than or equal to 20" in errors["audit.max_trials"]
    assert set(errors) == {"max_epsilon_per_request", "audit.max_trials"}


def test_secret_key_is_private_and_shared_by_concurrent_starters(tmp_path: Path) -> None:
    keys: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: keys.append(load_secret(tmp_path))) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(keys)) == 1 and len(keys[0]) == 32
    assert stat.S_IMODE(os.stat(tmp_path / "secret_key").st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret_key"]
    assert load_secret(tmp_path, configured="from-settings") == b"from-settings"


def test_csrf_tokens_are_bound_to_the_session_and_the_secret() -> None:
    secret, other = b"a" * 32, b"b" * 32
    token = csrf_token(secret, "session-1")
    assert csrf_ok(secret, "session-1", token)
    assert not csrf_ok(secret, "session-2", token)
    assert not csrf_ok(other, "session-1", token)
    assert not csrf_ok(secret, "session-1", "")
    assert not csrf_ok(secret, "", csrf_token(secret, ""))
    # A login token is not a session token of the same string, and the reverse.
    assert not csrf_ok(secret, "n", login_csrf_token(secret, "n"))
    assert login_csrf_ok(secret, "n", login_csrf_token(secret, "n"))
    assert not login_csrf_ok(secret, "", login_csrf_token(secret, ""))


def test_report_view_reads_the_checker_report_model() -> None:
    report = PolicyReport(verdict="needs_review", entry="f", policy_version="v1")
    report.add("raw_output", "warning", "Returns a raw mean.", line=4, stage="dry_run")
    view = report_view(report.model_dump(mode="json"))
    assert view.checked and view.verdict == "needs_review" and view.tone == "warn"
    assert view.findings[0]["line"] == 4
    assert report_view(None).checked is False


def test_next_path_stays_on_the_site() -> None:
    assert safe_next("/requests/1?x=1") == "/requests/1?x=1"
    for hostile in ("//evil.example", "https://evil.example", "/\\evil.example", "javascript:x"):
        assert safe_next(hostile) == "/queue"
