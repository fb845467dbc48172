"""The policy report as the request page shows it, read from the stored report JSON.

The page reads the report generically: a verdict, findings with lines, and everything
else the checker put in (the dry-run's outputs on mock data, measured budgets, audit
figures) as labelled sections, so a new report field shows up without a page change.

>>> view = report_view({"verdict": "blocked", "findings": [{"line": 2}], "extra": [1],
...                     "budget": {"declared_epsilon": 1.0, "measured_epsilon": None}})
>>> view.verdict, view.tone, [s.title for s in view.sections], view.budget_rows
('blocked', 'bad', ['Extra'], [('Declared epsilon', 1.0), ('Measured epsilon', None)])
>>> report_view(None).checked
False
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TONES = {"pass": "ok", "passed": "ok", "ok": "ok", "blocked": "bad", "fail": "bad"}
# How private each returned value is (``policies.report.OutputInfo.cls``).
OUTPUT_TONES = {"dp": "ok", "post_processing": "ok", "raw": "bad", "unknown": "warn"}
# Fields of ``policies.report.PolicyReport`` the page lays out itself; any other field
# is shown as a generic section.
HEADER_KEYS = ("verdict", "findings", "summary", "kind", "entry", "policy_version")
KNOWN_KEYS = ("budget", "outputs", "notes", "timings")
BUDGET_LABELS = {
    "declared_epsilon": "Declared epsilon",
    "declared_delta": "Declared delta",
    "static_epsilon": "Epsilon implied by constants in the code",
    "measured_epsilon": "Measured epsilon",
    "measured_delta": "Measured delta",
    "audit_epsilon_lower_bound": "Lower bound on epsilon from the empirical audit",
    "audit_confidence": "Confidence of that bound",
}


@dataclass
class Section:
    key: str
    title: str
    value: Any

    @property
    def is_scalar(self) -> bool:
        return not isinstance(self.value, dict | list)

    @property
    def is_table(self) -> bool:
        """A list of flat records: rendered as a table with one column per key."""
        return (
            isinstance(self.value, list)
            and bool(self.value)
            and all(isinstance(v, dict) for v in self.value)
            and all(not isinstance(x, dict | list) for v in self.value for x in v.values())
        )

    @property
    def columns(self) -> list[str]:
        seen: dict[str, None] = {}
        for row in self.value if self.is_table else []:
            seen.update(dict.fromkeys(row))
        return list(seen)

    @property
    def is_mapping(self) -> bool:
        return isinstance(self.value, dict)


@dataclass
class ReportView:
    checked: bool
    verdict: str = "not checked yet"
    tone: str = "neutral"
    summary: str = ""
    findings: list[dict[str, Any]] = field(default_factory=list)
    budget_rows: list[tuple[str, Any]] = field(default_factory=list)
    mechanisms: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, Any] = field(default_factory=dict)
    sections: list[Section] = field(default_factory=list)

    @property
    def has_dry_run(self) -> bool:
        return bool(self.budget_rows or self.mechanisms or self.outputs or self.sections)

    @property
    def blocking(self) -> list[dict[str, Any]]:
        return [f for f in self.findings if f.get("severity") == "blocking"]


def tone_of(verdict: str) -> str:
    return TONES.get(verdict, "warn" if verdict != "not checked yet" else "neutral")


def report_view(report: dict[str, Any] | None) -> ReportView:
    if not report:
        return ReportView(checked=False)
    verdict = str(report.get("verdict") or "unknown")
    findings = [f for f in report.get("findings") or [] if isinstance(f, dict)]
    sections = [
        Section(key, key.replace("_", " ").capitalize(), value)
        for key, value in report.items()
        if key not in HEADER_KEYS + KNOWN_KEYS and value not in (None, "", [], {})
    ]
    summary = report.get("summary")
    budget = report.get("budget") if isinstance(report.get("budget"), dict) else {}
    return ReportView(
        checked=True,
        verdict=verdict,
        tone=tone_of(verdict),
        summary=summary if isinstance(summary, str) else "",
        findings=findings,
        budget_rows=[
            (BUDGET_LABELS.get(k, k.replace("_", " ").capitalize()), v)
            for k, v in budget.items()
            if not isinstance(v, dict | list)
        ],
        mechanisms=[m for m in budget.get("mechanisms") or [] if isinstance(m, dict)],
        outputs=[o for o in report.get("outputs") or [] if isinstance(o, dict)],
        notes=[str(n) for n in report.get("notes") or []],
        timings=report.get("timings") if isinstance(report.get("timings"), dict) else {},
        sections=sections,
    )
