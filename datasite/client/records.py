"""Client-side views of the site's records, with HTML reprs for notebooks.

Both clients subclass ``RequestRecord``: the owner's adds decisions, the researcher's
adds results. The views hold the JSON the site returned and re-read it on ``refresh()``.
"""

from __future__ import annotations

import html
from collections.abc import Iterator, Sequence
from typing import Any, Generic, Protocol, TypeVar

from datasite.client.http import ApiSession

STATE_COLOURS = {
    "submitted": "#6b7280",
    "checked": "#2563eb",
    "approved": "#15803d",
    "auto_approved": "#15803d",
    "denied": "#b91c1c",
    "running": "#a16207",
    "released": "#15803d",
    "failed": "#b91c1c",
    "withheld": "#7c2d12",
}


class _HasName(Protocol):
    name: str


Item = TypeVar("Item", bound=_HasName)


class Named(Generic[Item]):
    """A read-only list that is also indexed by its items' names (``assets["pings"]``).

    >>> from types import SimpleNamespace as NS
    >>> items = Named([NS(name="a"), NS(name="b")], "asset")
    >>> items["b"].name, items[0].name, len(items)
    ('b', 'a', 2)
    >>> Named([NS(name="a")], "asset")
    [namespace(name='a')]
    """

    def __init__(self, items: Sequence[Item], kind: str) -> None:
        self._items = list(items)
        self._kind = kind

    def __getitem__(self, key: int | str) -> Item:
        if isinstance(key, int):
            return self._items[key]
        for item in self._items:
            if item.name == key:
                return item
        known = ", ".join(i.name for i in self._items) or "none"
        raise KeyError(f"No {self._kind} {key!r}; there are: {known}")

    def __iter__(self) -> Iterator[Item]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return repr(self._items)


class Record:
    """JSON the site returned, with its fields readable as attributes."""

    data: dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["data"][name]
        except KeyError:
            raise AttributeError(name) from None


def html_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in columns) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def report_object(report: dict[str, Any] | None) -> Any:
    """The policy report as the checker's own model (with Markdown and HTML renderings)."""
    if report is None:
        return None
    from policies.report import PolicyReport

    return PolicyReport.model_validate(report)


class RequestRecord(Record):
    """A code request as the site last described it."""

    def __init__(self, session: ApiSession, data: dict[str, Any]) -> None:
        self._session = session
        self.data = data

    def refresh(self) -> RequestRecord:
        self.data = self._session.get(f"/requests/{self.id}")
        return self

    @property
    def id(self) -> int:
        return self.data["id"]

    @property
    def state(self) -> str:
        return self.data["state"]

    @property
    def code(self) -> str:
        """The submitted source, exactly as stored."""
        return self.data["source"]

    @property
    def deny_reason(self) -> str | None:
        return self.data["deny_reason"]

    @property
    def policy_report(self) -> Any:
        return report_object(self.data["policy_report"])

    @property
    def runs(self) -> list[dict[str, Any]]:
        return self.data["runs"]

    def __repr__(self) -> str:
        d = self.data
        return (
            f"<CodeRequest {d['id']} {d['entry']} on {d['dataset']} by {d['author']}: "
            f"{d['state']}, epsilon={d['epsilon']:g}>"
        )

    def _repr_html_(self) -> str:
        d = self.data
        colour = STATE_COLOURS.get(d["state"], "#6b7280")
        verdict = (d.get("policy_report") or {}).get("verdict", "not checked yet")
        findings = (d.get("policy_report") or {}).get("findings", [])
        rows = [
            {
                "line": f.get("line") or "",
                "severity": f.get("severity"),
                "rule": f.get("rule"),
                "message": f.get("message"),
            }
            for f in findings
        ]
        reason = (
            f"<p><b>Denied:</b> {html.escape(d['deny_reason'])}</p>" if d.get("deny_reason") else ""
        )
        return (
            f"<div><h4>Request {d['id']}: <code>{html.escape(d['entry'])}</code> "
            f"<span style='color:{colour}'>{html.escape(d['state'])}</span></h4>"
            f"<p>{html.escape(d['author'])} · dataset {html.escape(d['dataset'])} · "
            f"epsilon {d['epsilon']:g}, delta {d['delta']:g} · verdict "
            f"<b>{html.escape(verdict)}</b></p>{reason}"
            + (html_table(rows, ["line", "severity", "rule", "message"]) if rows else "")
            + f"<details><summary>code</summary><pre>{html.escape(d['source'])}</pre></details>"
            "</div>"
        )
