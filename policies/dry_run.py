"""Reading the instrumented dry-run's answer into the report (in the parent process).

The harness (:mod:`policies.instrument`) measured the spend and classified the outputs;
here they are compared with the declaration and reconciled with static analysis:

- measured epsilon/delta above the declaration -> ``epsilon_exceeds_declaration`` /
  ``delta_exceeds_declaration`` (blocking);
- a measurement used but not declared -> ``undeclared_mechanism`` (warning);
- a release whose privacy map could not be evaluated -> ``privacy_map_unavailable``;
- an output the replay shows ``raw`` -> ``raw_output`` at the policy's severity, unless
  static analysis already flagged it;
- a returned value the result codec cannot encode (the dry-run encodes as the real run
  does) -> ``unreleasable_output`` (blocking): the real run would spend and then fail;
- an output static analysis marked raw because DP releases and raw data both flow into
  it, but that the replay shows depends on the releases only, has its static finding
  lowered to ``info``: the fixed-noise replay is the finer test.
"""

from __future__ import annotations

from typing import Any

from policies import dp_libraries
from policies.mechanisms import same_mechanism
from policies.report import MechanismUse, OutputInfo, PolicyReport
from policies.schema import TOLERANCE, Policy
from policies.static import StaticResult, non_dp_severity


def apply_dry_run(
    payload: dict[str, Any],
    decl: Any,
    policy: Policy,
    static: StaticResult,
    report: PolicyReport,
) -> None:
    """Fold the harness's ``payload`` into ``report`` (budget, findings, outputs)."""
    assert report.budget is not None
    spend = payload.get("spend") or {}
    uses = _uses(spend)
    report.budget.mechanisms = uses
    report.budget.measured_epsilon = spend.get("epsilon")
    report.budget.measured_delta = spend.get("delta")
    if decl.kind.value == "context":
        _context_outputs(payload, report)
        return
    _compare(spend, uses, decl, report)
    _declared(uses, decl, report)
    _outputs(payload, policy, static, report)
    if payload.get("unencodable"):
        report.add(
            "unreleasable_output",
            "blocking",
            "What the function returns cannot leave the site: "
            f"{str(payload['unencodable'])[:300]} On the private data the run would read "
            "the rows and spend the budget, then fail.",
            stage="dry_run",
        )
    if payload.get("replay_aligned") is False:
        report.notes.append(
            "The replay with fixed noise did not line up with the first run (the releases "
            "depend on the data's size or values), so some outputs could not be classified."
        )
    rowwise = [u for u in uses if u.composition.startswith("element-wise")]
    if rowwise:
        report.notes.append(
            "Releases applied element-wise over rows (Series.apply and the like) are input "
            "perturbation: each row's release is about a different person, so they compose "
            "in parallel over rows; a person's row touched by k releases costs k times their "
            "epsilon."
        )


def _uses(spend: dict[str, Any]) -> list[MechanismUse]:
    """Each instrumented library's entries as report rows (its ``report``)."""
    uses: list[MechanismUse] = []
    for library in dp_libraries.instrumented():
        assert library.report is not None
        uses += library.report(spend.get(library.spend_key, []))
    return uses


def _compare(spend: dict[str, Any], uses: list[MechanismUse], decl: Any, r: PolicyReport) -> None:
    for use in uses:
        if use.epsilon_total is None:
            r.add(
                "privacy_map_unavailable",
                "warning",
                f"`{use.name}` released {use.invocations} time(s) but its privacy map could "
                "not be evaluated; its spend is unknown.",
                use.line,
                stage="dry_run",
            )
    epsilon = spend.get("epsilon")
    if epsilon is not None and epsilon > decl.epsilon * (1 + TOLERANCE) + 1e-12:
        parts = "; ".join(
            f"`{u.name}` line {u.line}: {u.epsilon_total:.4g} ({u.invocations} release(s), "
            f"sensitivity {u.d_in if u.d_in is not None else '?'} from {u.d_in_source}; "
            f"{u.composition})"
            for u in uses
            if u.epsilon_total
        )
        line = next((u.line for u in uses if u.epsilon_total), None)
        r.add(
            "epsilon_exceeds_declaration",
            "blocking",
            f"The dry-run measured epsilon {epsilon:.4g}, above the declared "
            f"{decl.epsilon:g}: {parts}.",
            line,
            stage="dry_run",
        )
    delta = spend.get("delta") or 0.0
    if delta > decl.delta * (1 + TOLERANCE) + 1e-15:
        r.add(
            "delta_exceeds_declaration",
            "blocking",
            f"The dry-run measured delta {delta:.3g}, above the declared {decl.delta:g}.",
            stage="dry_run",
        )


def _declared(uses: list[MechanismUse], decl: Any, r: PolicyReport) -> None:
    if not decl.mechanisms:
        return
    flagged = {(f.rule, f.line) for f in r.findings}
    covers = [lib.covers for lib in dp_libraries.LIBRARIES if lib.covers is not None]
    for use in uses:
        if any(same_mechanism(use.name, d) for d in decl.mechanisms):
            continue
        if any(cover(use.name, decl.mechanisms) for cover in covers):
            continue
        if ("undeclared_mechanism", use.line) not in flagged:
            r.add(
                "undeclared_mechanism",
                "warning",
                f"Released through `{use.name}`, which the request does not declare.",
                use.line,
                stage="dry_run",
            )


def _context_outputs(payload: dict[str, Any], report: PolicyReport) -> None:
    names = [o["name"] for o in payload.get("outputs", [])] or [o.name for o in report.outputs]
    types = {o["name"]: o["type"] for o in payload.get("outputs", [])}
    report.outputs = [
        OutputInfo(name=n, type=types.get(n, "?"), cls="dp",
                   reason="released through the site's OpenDP Context (DP by construction)")
        for n in names
    ]  # fmt: skip
    report.notes.append(
        "A Context request: the function only sees an OpenDP Context bound to the declared "
        "budget, so every release is DP by construction and the total cannot exceed it."
    )


def _outputs(
    payload: dict[str, Any], policy: Policy, static: StaticResult, report: PolicyReport
) -> None:
    static_classes = {o.name: o for o in static.outputs}
    merged: list[OutputInfo] = []
    for item in payload.get("outputs", []):
        name, cls = item["name"], item["cls"]
        before = static_classes.get(name)
        info = OutputInfo(
            name=name, type=item["type"], cls=cls, reason=f"dry-run: {item['reason']}"
        )
        flagged = static.output_findings.get(name, [])
        if cls == "raw" and not flagged:
            report.add(
                "raw_output",
                non_dp_severity(policy),
                f"Output `{name}` ({item['type']}) changed on other data although every "
                "DP release was held fixed: it depends on the data directly.",
                stage="dry_run",
            )
        elif cls in ("dp", "post_processing") and flagged and name in static.mixed_outputs:
            for finding in flagged:
                finding.severity = "info"
                finding.message += (
                    " The dry-run replay shows it depends only on the DP "
                    "releases, so it is post-processing."
                )
        elif cls == "unknown" and before is not None and before.cls in ("dp", "post_processing"):
            info = OutputInfo(
                name=name,
                type=item["type"],
                cls=before.cls,
                reason=f"{before.reason}; dry-run: {item['reason']}",
            )
        elif cls in ("dp", "post_processing") and flagged:
            cls = "raw"  # plainly raw in the code: a replay that misses it does not clear it
            info = OutputInfo(
                name=name,
                type=item["type"],
                cls="raw",
                reason=before.reason if before else "static: raw",
            )
        merged.append(info)
    if merged:
        report.outputs = merged
