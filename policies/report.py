"""The policy report: what the checker found, in a form people and the server can use.

The server stores ``report.model_dump(mode="json")`` with the request; reviewers read
``to_markdown()`` or ``to_html()``; the researcher's notebook shows ``to_html()``.
Reports are built from the mock data only and never carry the run's stdout or values
taken from the data: findings describe code, budgets and output classes.

>>> r = PolicyReport(verdict="blocked", policy_version="abc", kind="mechanism")
>>> finding = r.add("forbidden_import", "blocking", "Imports os.", line=2)
>>> "| 2 | blocking | forbidden_import |" in r.to_markdown()
True
>>> "href='#line-2'" in r.to_html(source="import os\\nimport sys\\n")
True
"""

from __future__ import annotations

import html
from typing import Any, Literal

from pydantic import BaseModel, Field

Severity = Literal["info", "warning", "blocking"]
Verdict = Literal["pass", "needs_review", "blocked"]
OutputClass = Literal["dp", "post_processing", "raw", "unknown"]

_SEVERITY_ORDER = {"blocking": 0, "warning": 1, "info": 2}
_COLOURS = {"blocking": "#b91c1c", "warning": "#b45309", "info": "#1d4ed8"}
_VERDICT_COLOURS = {"pass": "#15803d", "needs_review": "#b45309", "blocked": "#b91c1c"}


class Finding(BaseModel):
    """One observation about the request; ``line`` is a line of the submitted source."""

    rule: str
    severity: Severity
    message: str
    line: int | None = None
    stage: Literal["static", "dry_run", "audit", "checker"] = "static"


class MechanismUse(BaseModel):
    """One DP mechanism the dry-run saw (or static analysis found), with its spend."""

    name: str
    line: int | None = None
    invocations: int = 0
    epsilon_each: float | None = None
    delta_each: float = 0.0
    epsilon_total: float | None = None
    delta_total: float = 0.0
    composition: str = ""  # how invocations were combined, in words
    d_in: float | None = None
    d_in_source: str = ""  # where the sensitivity came from


class Budget(BaseModel):
    """Declared against measured privacy loss (``None``: not measured)."""

    declared_epsilon: float
    declared_delta: float = 0.0
    static_epsilon: float | None = None  # implied by constant parameters in the code
    measured_epsilon: float | None = None  # from the instrumented dry-run
    measured_delta: float | None = None
    audit_epsilon_lower_bound: float | None = None  # from the empirical audit
    audit_confidence: float | None = None
    mechanisms: list[MechanismUse] = Field(default_factory=list)


class OutputInfo(BaseModel):
    """One returned value (``name`` is its position or key) and how private it is."""

    name: str
    type: str
    cls: OutputClass
    reason: str = ""


class PolicyReport(BaseModel):
    """The checker's verdict on one code request.

    ``pass``: no finding above ``info`` and every output DP by construction (a Context
    request, or mechanism outputs all proven DP within the declared budget) — eligible
    for automatic approval where the policy allows it. ``needs_review``: no blocking
    finding, a human decides. ``blocked``: at least one blocking finding; only an
    explicit override with a justification can approve it.
    """

    verdict: Verdict = "needs_review"
    kind: str = "mechanism"
    entry: str = ""
    policy_version: str = ""
    findings: list[Finding] = Field(default_factory=list)
    budget: Budget | None = None
    outputs: list[OutputInfo] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict)  # stage -> seconds
    notes: list[str] = Field(default_factory=list)  # how the checker reasoned, in words

    # -- building ----------------------------------------------------------------------

    def add(
        self,
        rule: str,
        severity: Severity,
        message: str,
        line: int | None = None,
        stage: str = "static",
    ) -> Finding:
        finding = Finding(rule=rule, severity=severity, message=message, line=line, stage=stage)
        self.findings.append(finding)
        return finding

    def rules(self, severity: Severity | None = None) -> set[str]:
        """The rules of the findings (of one severity if given)."""
        return {f.rule for f in self.findings if severity is None or f.severity == severity}

    @property
    def blocking(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "blocking"]

    def sorted_findings(self) -> list[Finding]:
        return sorted(self.findings, key=lambda f: (_SEVERITY_ORDER[f.severity], f.line or 0))

    # -- rendering ---------------------------------------------------------------------

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    def _budget_rows(self) -> list[tuple[str, str]]:
        b = self.budget
        if b is None:
            return []

        def fmt(value: float | None) -> str:
            return "not measured" if value is None else f"{value:.6g}"

        rows = [
            ("declared epsilon", fmt(b.declared_epsilon)),
            ("declared delta", fmt(b.declared_delta)),
            ("epsilon implied by the code (static)", fmt(b.static_epsilon)),
            ("epsilon measured in the dry-run", fmt(b.measured_epsilon)),
            ("delta measured in the dry-run", fmt(b.measured_delta)),
            ("epsilon lower bound from the audit", fmt(b.audit_epsilon_lower_bound)),
        ]
        return rows

    def to_markdown(self) -> str:
        """A Markdown report for terminals and review notes."""
        lines = [
            f"## Policy report: `{self.entry}` ({self.kind})",
            "",
            f"**Verdict: {self.verdict}** · policy `{self.policy_version}`",
            "",
        ]
        if self.findings:
            lines += ["| line | severity | rule | message |", "|---|---|---|---|"]
            for f in self.sorted_findings():
                message = f.message.replace("|", "\\|").replace("\n", " ")
                lines.append(f"| {f.line or ''} | {f.severity} | {f.rule} | {message} |")
            lines.append("")
        else:
            lines += ["No findings.", ""]
        if self.budget is not None:
            lines += ["| budget | value |", "|---|---|"]
            lines += [f"| {k} | {v} |" for k, v in self._budget_rows()]
            lines.append("")
            for m in self.budget.mechanisms:
                where = f" (line {m.line})" if m.line else ""
                eps = "?" if m.epsilon_total is None else f"{m.epsilon_total:.6g}"
                lines.append(
                    f"- `{m.name}`{where}: {m.invocations} invocation(s), epsilon {eps}"
                    + (f"; {m.composition}" if m.composition else "")
                )
            lines.append("")
        if self.outputs:
            lines += ["| output | type | class | why |", "|---|---|---|---|"]
            lines += [f"| {o.name} | {o.type} | {o.cls} | {o.reason} |" for o in self.outputs]
            lines.append("")
        lines += [f"> {n}" for n in self.notes]
        if self.timings:
            lines.append("Timings: " + ", ".join(f"{k} {v:.2f}s" for k, v in self.timings.items()))
        return "\n".join(lines).rstrip() + "\n"

    def to_html(self, source: str | None = None) -> str:
        """A self-contained HTML fragment; every value is escaped.

        With ``source``, the code is shown with numbered lines (``id="line-N"``) and each
        finding links to its line.
        """
        e = html.escape
        colour = _VERDICT_COLOURS[self.verdict]
        parts = [
            "<div class='policy-report' style='font-family:sans-serif'>",
            f"<h4>Policy report: <code>{e(self.entry)}</code> ({e(self.kind)})</h4>",
            f"<p>Verdict: <b style='color:{colour}'>{e(self.verdict)}</b> · policy "
            f"<code>{e(self.policy_version)}</code></p>",
        ]
        if self.findings:
            parts.append(
                "<table><thead><tr><th>line</th><th>severity</th><th>rule</th>"
                "<th>message</th></tr></thead><tbody>"
            )
            for f in self.sorted_findings():
                line = ""
                if f.line:
                    line = f"<a href='#line-{f.line}'>{f.line}</a>" if source else str(f.line)
                parts.append(
                    f"<tr><td>{line}</td><td style='color:{_COLOURS[f.severity]}'>"
                    f"{e(f.severity)}</td><td><code>{e(f.rule)}</code></td>"
                    f"<td>{e(f.message)}</td></tr>"
                )
            parts.append("</tbody></table>")
        else:
            parts.append("<p>No findings.</p>")
        rows = self._budget_rows()
        if rows:
            parts.append("<table><tbody>")
            parts += [f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows]
            parts.append("</tbody></table>")
        if self.outputs:
            parts.append(
                "<table><thead><tr><th>output</th><th>type</th><th>class</th><th>why</th>"
                "</tr></thead><tbody>"
            )
            parts += [
                f"<tr><td>{e(o.name)}</td><td>{e(o.type)}</td><td><b>{e(o.cls)}</b></td>"
                f"<td>{e(o.reason)}</td></tr>"
                for o in self.outputs
            ]
            parts.append("</tbody></table>")
        parts += [f"<p><i>{e(n)}</i></p>" for n in self.notes]
        if source is not None:
            flagged = {f.line for f in self.findings if f.line}
            code = "".join(
                f"<span id='line-{i}' style='{'background:#fde68a' if i in flagged else ''}'>"
                f"{i:>4}  {e(text)}</span>\n"
                for i, text in enumerate(source.splitlines(), start=1)
            )
            parts.append(f"<pre>{code}</pre>")
        parts.append("</div>")
        return "".join(parts)

    def _repr_html_(self) -> str:
        return self.to_html()

    def summary(self) -> dict[str, Any]:
        """Verdict and finding counts, for logs and audit entries."""
        counts = {s: sum(f.severity == s for f in self.findings) for s in _SEVERITY_ORDER}
        return {"verdict": self.verdict, "policy_version": self.policy_version, **counts}
