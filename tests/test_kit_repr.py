"""The researcher's notebook niceties, on a fake session (no server): the site's repr,
one style for ``requests``/``budgets``/``projects``, budgets for people, the blocked
request's message, and a plain progress line where rich would need ipywidgets."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from researcher_kit import client as kit
from researcher_kit.client import Budget, Request, Site, for_people

GRANT = {
    "email": "bob@uni.example",
    "dataset": "Pings",
    "epsilon": 3.0,
    "delta": 0.0,
    "spent_epsilon": 1.9000000000000001,
    "spent_delta": 0.0,
    "remaining_epsilon": 1.0999999999999999,
    "remaining_delta": 0.0,
}
BLOCKED_REPORT = {
    "verdict": "blocked",
    "findings": [{"rule": "forbidden_import", "severity": "blocking", "message": "Imports os."}],
}


class FakeSession:
    """Answers ``get`` from a dict of paths; records what was asked."""

    url = "http://127.0.0.1:8080"

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.user = {"email": "bob@uni.example", "role": "researcher"}
        self.asked: list[str] = []

    def get(self, path: str, **_: Any) -> Any:
        self.asked.append(path)
        return self.answers[path]


def site_with(**answers: Any) -> Site:
    defaults = {"/datasets": [{"name": "Pings"}, {"name": "Diabetes"}], "/budgets": [GRANT]}
    return Site(FakeSession(defaults | answers))  # type: ignore[arg-type]


def test_site_repr_names_url_user_and_dataset_count() -> None:
    text = repr(site_with())
    assert "http://127.0.0.1:8080" in text
    assert "bob@uni.example" in text
    assert "2 datasets" in text


def test_requests_budgets_projects_read_the_same_as_attribute_or_call() -> None:
    site = site_with(
        **{"/projects": [{"name": "Study"}], "/requests": [{"id": 1, "state": "checked"}]}
    )
    for name in ("requests", "budgets", "projects"):
        as_attribute = getattr(site, name)
        assert isinstance(as_attribute, list)
        assert len(as_attribute) == len(getattr(site, name)()) == 1
    assert site.budgets()[0]["remaining_epsilon"] == pytest.approx(1.1)
    assert isinstance(site.requests[0], Request)
    assert site.projects == [{"name": "Study"}]


def test_budget_repr_is_rounded_for_people() -> None:
    text = repr(site_with().budgets)
    assert "1.1 of 3.0 left" in text
    assert "0999" not in text and "1.9000" not in text
    assert Budget(GRANT) == GRANT  # still the dict the site sent


@pytest.mark.parametrize(
    ("value", "shown"), [(2, "2.0"), (0.5, "0.5"), (1.0999999999999999, "1.1"), (0.125, "0.125")]
)
def test_for_people(value: float, shown: str) -> None:
    assert for_people(value) == shown


def test_result_of_blocked_request_says_only_the_owner_can_approve() -> None:
    session = FakeSession(
        {"/requests/7/result": {"request_id": 7, "state": "checked", "run": None}}
    )
    request = Request(session, {"id": 7, "state": "checked", "policy_report": BLOCKED_REPORT})  # type: ignore[arg-type]
    with pytest.raises(PermissionError) as raised:
        request.result()
    message = str(raised.value)
    assert "only the data owner" in message.lower()
    assert "justification" in message
    assert "Imports os." in message


def test_result_of_request_needing_review_says_it_waits() -> None:
    session = FakeSession(
        {"/requests/8/result": {"request_id": 8, "state": "checked", "run": None}}
    )
    report = {"verdict": "needs_review", "findings": []}
    request = Request(session, {"id": 8, "state": "checked", "policy_report": report})  # type: ignore[arg-type]
    with pytest.raises(PermissionError, match="waiting for a reviewer"):
        request.result()


def test_wait_in_a_notebook_without_ipywidgets_prints_plain_lines(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DATASITE_NO_PROGRESS", raising=False)
    monkeypatch.setattr(kit, "in_notebook_without_widgets", lambda: True)
    states = iter(["checked", "approved", "running", "released"])
    session = FakeSession({})
    session.get = lambda path, **_: {"id": 3, "state": next(states)}  # type: ignore[method-assign]
    request = Request(session, {"id": 3, "state": "submitted"})  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rich's 'install "ipywidgets"' would fail here
        request.wait()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Request 3: submitted ..."
    assert [line.split(" (")[0] for line in lines[1:]] == [
        "Request 3: checked",
        "Request 3: approved",
        "Request 3: running",
        "Request 3: released",
    ]


def test_notebook_detection_wants_widgets(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    import rich.console

    monkeypatch.setattr(rich.console, "_is_jupyter", lambda: True)
    real_import = builtins.__import__

    def no_widgets(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "ipywidgets":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_widgets)
    assert kit.in_notebook_without_widgets()
