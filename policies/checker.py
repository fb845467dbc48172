"""The policy checker: static analysis, an instrumented dry-run and an empirical audit.

The server calls :func:`check_request` when a request is submitted and stores the
report; the researcher kit calls it (through the site's pre-check) on the mock before
submitting. Submitted code only ever runs inside the sandbox, through ``executor``.

>>> from policies.schema import DEFAULT_POLICY
>>> src = "import os\\ndef f(df):\\n    return os.listdir('/')\\n"
>>> report = check_request(src, "f", {"epsilon": 0.5}, DEFAULT_POLICY, {})
>>> report.verdict, sorted(report.rules("blocking"))
('blocked', ['forbidden_import'])

Verdicts: ``blocked`` when any finding blocks. ``pass`` only for a *data-blind* request
(the kit's helpers on a blind frame, or an OpenDP Context): its function ran on the mock
in a sandbox holding no data, every release went through the site's releaser (which
keeps the odometer and the privacy unit), nothing above ``info`` was found, and so its
outputs are DP by construction. Everything else is ``needs_review``, and a raw-data
request (its function receives the table) always is: it can behave on the mock and leak
on the real data, so static analysis, the instrumented dry-run and the audit are
evidence for a human, never a proof.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

from datasite.contract.job import ContextOptions, JobResult, JobSpec, Limits, RequestKind
from policies import dp_audit, dp_events
from policies.report import Budget, PolicyReport
from policies.schema import TOLERANCE, Policy
from policies.static import StaticResult, analyse, non_dp_severity

#: Static rules after which the code is not worth running, even in the sandbox.
NOT_RUN_AFTER = frozenset(
    {
        "syntax_error",
        "entry_missing",
        "forbidden_import",
        "dangerous_builtin",
        "dunder_access",
        "file_access",
        "network_access",
    }
)
RAW_DATA_STATEMENT = (
    "This code reads raw rows: its function receives the private table itself. It can "
    "behave on the mock and leak on the real data, so nothing automatic can show it is DP; "
    "the evidence below helps a person decide. Written with the kit's helpers or an OpenDP "
    "Context (data-blind), it would be DP by construction."
)


class Declaration(BaseModel):
    """What the request says about itself."""

    kind: RequestKind = RequestKind.MECHANISM
    epsilon: float = Field(default=0.0, ge=0)
    delta: float = Field(default=0.0, ge=0, le=1)
    mechanisms: list[str] = Field(default_factory=list)
    context: ContextOptions = Field(default_factory=ContextOptions)


def _declaration(value: Any) -> Declaration:
    if isinstance(value, Declaration):
        return value
    if isinstance(value, Mapping):
        return Declaration.model_validate({k: v for k, v in value.items() if v is not None})
    return Declaration.model_validate(value, from_attributes=True)


#: Output room per allowed audit run: its fresh runs on both tables and the screening's
#: (an eighth more), 16 float64 outputs each, with room to spare.
AUDIT_BYTES_PER_TRIAL = 384

#: The report's statement of the policy's neighbouring datasets.
NEIGHBOURING = {
    "add_remove": "Neighbouring datasets (the dataset's policy): one person's rows added or "
    "removed. The dry-run's privacy maps and the audit use this definition.",
    "change": "Neighbouring datasets (the dataset's policy): one person's rows changed, the "
    "table's size public. The dry-run's privacy maps (a change is a removal and an addition) "
    "and the audit use this definition.",
}


def check_request(
    source: str,
    entry: str,
    declaration: Mapping[str, Any] | Declaration,
    policy: Policy,
    mock_inputs: Mapping[str, str],
    executor: Any = None,
) -> PolicyReport:
    """Check one code request against ``policy`` on the mock data.

    ``mock_inputs`` maps the function's arguments to mock Parquet paths. ``executor`` runs
    sandbox jobs (``submit(spec)`` returning a future, or ``run(spec)``); the caller owns
    it (the site passes its own). Without one only static analysis runs, and the report
    says so.
    """
    decl = _declaration(declaration)
    # The privacy unit is the owner's: the request's own claim is replaced, not trusted.
    unit = ContextOptions(queries=decl.context.queries, max_contributions=policy.max_contributions)
    decl = decl.model_copy(update={"context": unit})
    report = PolicyReport(kind=decl.kind.value, entry=entry, policy_version=policy.version)
    report.budget = Budget(declared_epsilon=decl.epsilon, declared_delta=decl.delta)
    report.notes.append(NEIGHBOURING[policy.neighbouring])
    if not decl.kind.data_blind:
        report.add("raw_data_access", "warning", RAW_DATA_STATEMENT, stage="checker")
    _limits(decl, policy, report)

    started = time.perf_counter()
    static = analyse(source, entry, decl.model_dump(mode="json"), policy)
    report.findings += static.findings
    report.budget.static_epsilon = static.epsilon
    report.outputs = list(static.outputs)
    report.timings["static"] = time.perf_counter() - started

    skip = sorted(report.rules("blocking") & NOT_RUN_AFTER)
    if skip:
        report.notes.append(f"Not run on the mock: static analysis found {', '.join(skip)}.")
    else:
        runner = _CheckerJobs(executor)
        if runner.executor is None:
            report.add(
                "not_run",
                "warning",
                "No sandbox executor: the code was not run on the "
                "mock; only static analysis applies.",
                stage="checker",
            )
        else:
            _dynamic(runner, source, entry, decl, policy, dict(mock_inputs), static, report)
    report.verdict = _verdict(report, decl)
    return report


def _limits(decl: Declaration, policy: Policy, report: PolicyReport) -> None:
    if decl.epsilon > policy.max_epsilon_per_request * (1 + TOLERANCE):
        report.add(
            "epsilon_over_policy_limit",
            "blocking",
            f"Declares epsilon {decl.epsilon:g}; the policy allows at most "
            f"{policy.max_epsilon_per_request:g} per request.",
            stage="checker",
        )
    if decl.delta > policy.max_delta_per_request * (1 + TOLERANCE):
        report.add(
            "delta_over_policy_limit",
            "blocking",
            f"Declares delta {decl.delta:g}; the policy allows at most "
            f"{policy.max_delta_per_request:g} per request.",
            stage="checker",
        )
    for name in decl.mechanisms:
        if not policy.allows_mechanism(name):
            report.add(
                "mechanism_not_allowed",
                "blocking",
                f"Declares `{name}`, which the policy does not allow.",
                stage="checker",
            )


# -- running jobs in the sandbox --------------------------------------------------------


class _CheckerJobs:
    """Submits checker jobs to whatever executor the caller has."""

    def __init__(self, executor: Any) -> None:
        self.executor = executor

    def run(self, spec: JobSpec) -> JobResult:
        if hasattr(self.executor, "run"):
            return self.executor.run(spec)
        outcome = self.executor.submit(spec)
        if hasattr(outcome, "result"):
            outcome = outcome.result(timeout=spec.limits.wall_seconds + 60)
        return outcome


def payload_of(result: JobResult) -> dict[str, Any]:
    """The harness's answer: its returned dict (decoded) with its harness report over it."""
    payload: dict[str, Any] = {}
    if result.manifest:
        from datasite.contract.results import decode_result

        value = decode_result(result.manifest, result.blobs)
        if isinstance(value, dict):
            payload.update(value)
    payload.update(result.harness_report or {})
    return payload


def _timed_out(result: JobResult) -> bool:
    if result.error_type in ("TimeoutError", "CpuTimeExceeded"):
        return True
    text = f"{result.error_type or ''} {result.error_message or ''}".lower()
    return "timeout" in text or "timed out" in text or "time limit" in text


def _spec(source: str, entry: str, decl: Declaration, inputs: dict[str, str], harness: str,
          options: dict[str, Any], wall: float, output_bytes: int | None = None
          ) -> JobSpec:  # fmt: skip
    limits = Limits(wall_seconds=wall, cpu_seconds=max(int(wall * 2) + 5, 10))
    if output_bytes is not None:
        limits.max_output_bytes = max(limits.max_output_bytes, output_bytes)
    return JobSpec(
        job_id=f"check-{uuid.uuid4().hex[:12]}",
        source=source,
        entry=entry,
        kind=decl.kind,
        inputs=inputs,
        epsilon=decl.epsilon,
        delta=decl.delta,
        context=decl.context,
        harness=harness,
        harness_options=options,
        limits=limits,
    )


def _failed(result: JobResult, stage: str, limit: float, report: PolicyReport) -> bool:
    if result.ok:
        return False
    if _timed_out(result):
        report.add(
            "non_termination",
            "blocking",
            f"The code did not finish on the mock within {limit:g} s (a loop that never ends?).",
            stage=stage,
        )
    else:
        message = (result.error_message or "")[:300]
        report.add(
            "run_failed",
            "warning",
            f"The code failed on the mock: {result.error_type or 'error'}"
            + (f": {message}" if message else "."),
            stage=stage,
        )
    return True


def _dynamic(
    runner: _CheckerJobs,
    source: str,
    entry: str,
    decl: Declaration,
    policy: Policy,
    inputs: dict[str, str],
    static: StaticResult,
    report: PolicyReport,
) -> None:
    sensitivities = {
        str(m.line): m.sensitivity
        for m in static.mechanisms
        if m.sensitivity is not None and "assumed" not in m.sensitivity_source
    }
    options = {"sensitivities": sensitivities, "delta": decl.delta,
               "max_contributions": decl.context.max_contributions,
               "neighbouring": policy.neighbouring}  # fmt: skip
    limit = policy.audit.dry_run_timeout_seconds
    started = time.perf_counter()
    if decl.kind.data_blind:
        _blind_dry_run(runner, source, entry, decl, inputs, limit, report)
        return
    spec = _spec(
        source, entry, decl, inputs, "policies.instrument:instrumented_call", options, limit
    )
    result = runner.run(spec)
    report.timings["dry_run"] = time.perf_counter() - started
    if _failed(result, "dry_run", limit, report):
        return
    from policies.dry_run import apply_dry_run

    apply_dry_run(payload_of(result), decl, policy, static, report)
    if not policy.audit.enabled or decl.kind == RequestKind.CONTEXT:
        return
    started = time.perf_counter()
    budget = policy.audit.time_budget_seconds
    options = {"time_budget": budget, "max_trials": policy.audit.max_trials,
               "confidence": policy.audit.confidence, "delta": decl.delta,
               "privacy_unit": policy.neighbouring}  # fmt: skip
    harness = "policies.dp_audit:audit_call"
    # The audit returns its runs' outputs (at most 16 numbers each) for the test
    # in this process: the output limit grows with the runs the policy allows.
    output = AUDIT_BYTES_PER_TRIAL * policy.audit.max_trials
    spec = _spec(source, entry, decl, inputs, harness, options, budget + limit, output)
    result = runner.run(spec)
    report.timings["audit"] = time.perf_counter() - started
    if not result.ok and _timed_out(result):
        # The dry-run showed the code finishes: the audit ran out of its own time (a slow
        # request), which says nothing about termination.
        report.notes.append(
            f"Audit stopped: the code is too slow for the audit's {budget:g} s budget."
        )
        return
    if _failed(result, "audit", budget + limit, report):
        return
    found = dp_audit.analyse(payload_of(result), policy.audit.confidence)
    _apply_audit(found, decl, policy, report)


def _blind_dry_run(
    runner: _CheckerJobs,
    source: str,
    entry: str,
    decl: Declaration,
    inputs: dict[str, str],
    limit: float,
    report: PolicyReport,
) -> None:
    """Run a data-blind request on the mock exactly as it will run on the data."""
    from policies.blind_run import apply_blind_run

    started = time.perf_counter()
    harness = "datasite.execution.harness:call_once"
    result = runner.run(_spec(source, entry, decl, inputs, harness, {}, limit))
    report.timings["dry_run"] = time.perf_counter() - started
    if _failed(result, "dry_run", limit, report):
        return
    from datasite.contract.results import decode_result

    apply_blind_run(result.spend, decode_result(result.manifest, result.blobs), report)


def _apply_audit(
    found: dict[str, Any], decl: Declaration, policy: Policy, report: PolicyReport
) -> None:
    if found.get("skipped"):
        report.notes.append(f"Audit skipped: {found['skipped']}.")
        return
    assert report.budget is not None
    bound = found["epsilon_lower_bound"]
    report.budget.audit_epsilon_lower_bound = bound
    report.budget.audit_confidence = policy.audit.confidence
    report.notes.append("Audit: " + dp_audit.plain_words(found, decl.epsilon))
    example = found.get("counterexample")
    if bound > decl.epsilon * (1 + TOLERANCE) and example:
        report.add(
            "audit_epsilon_exceeds_declaration",
            "blocking",
            f"Counterexample: on two made-up tables that differ in one row ({example['pair']}), "
            f'"{example["event"]}" happened {example["hits_base"]}/{example["runs_base"]} '
            f"vs {example['hits_other']}/{example['runs_other']} times: epsilon is at least "
            f"{bound:.3g} ({policy.audit.confidence:.0%} confidence), above the declared "
            f"{decl.epsilon:g}: too little noise.",
            stage="audit",
        )
        if found.get("svg"):
            report.notes.append(
                "Audit plot (output histograms on the two tables, blue D, red D'): "
                + dp_events.data_uri(found["svg"])
            )
    for item in found["deterministic_data_dependent"]:
        report.add(
            "deterministic_output",
            non_dp_severity(policy),
            f"Output `{item['output']}` is the same on every one of {item['runs']} runs yet "
            f"changes when one row changes ({', '.join(item['changes_on'])}): it carries "
            "no noise.",
            stage="audit",
        )
    randomized = set(found.get("randomized_outputs", []))
    if "hand_written_noise" in report.rules() and not report.rules("blocking") - {"raw_output"}:
        for finding in report.findings:
            output = finding.message.split("Output `", 1)[-1].split("`", 1)[0]
            if finding.rule == "raw_output" and finding.stage == "dry_run" and output in randomized:
                finding.severity = "warning"
                finding.message += (
                    " The audit saw it vary between runs on the same table: the code adds "
                    "its own noise, which the dry-run cannot hold fixed; the audit judges it."
                )
    if found.get("too_few_runs"):
        report.notes.append(
            "The audit had too few runs for a statistical test; raise the policy's audit "
            "time budget for a stronger check."
        )


# -- the verdict ------------------------------------------------------------------------


def _verdict(report: PolicyReport, decl: Declaration) -> str:
    """``pass`` only for a data-blind request that ran on the mock and raised nothing.

    A raw-data request is at best ``needs_review``: it can behave on the mock and leak
    on the real table, and nothing the checker sees of it can rule that out.
    """
    if report.blocking:
        return "blocked"
    if not decl.kind.data_blind:
        return "needs_review"
    if any(f.severity == "warning" for f in report.findings):
        return "needs_review"
    budget = report.budget
    ran = budget is not None and budget.measured_epsilon is not None
    if not ran or any(o.cls not in ("dp", "post_processing") for o in report.outputs):
        return "needs_review"
    return "pass"


__all__ = ["Declaration", "check_request", "payload_of"]
