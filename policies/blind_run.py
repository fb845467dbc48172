"""The dry-run of a data-blind request: what the releaser released on the mock, and at what cost.

A data-blind function (``RequestKind.BLIND`` or ``CONTEXT``) runs where no data is; every
release it made went through the site's releaser, which kept the ledger. So the report
needs no instrumentation of the researcher's code and cannot be fooled by it: the spend
is the releaser's, the mechanisms are the site's, and every output is post-processing of
released values. What can still go wrong is reported here: the function failed on the
mock, released nothing (its outputs are then constants, which the site lets through:
they carry no data), or asked for more than it declared (the releaser refused).

>>> from policies.report import Budget, PolicyReport
>>> report = PolicyReport(kind="blind", budget=Budget(declared_epsilon=1.0))
>>> ledger = [{"helper": "mean", "mechanism": "laplace", "epsilon": 0.5, "delta": 0.0}]
>>> apply_blind_run(ledger, {"mean": 41.0}, report)
>>> report.budget.measured_epsilon, [o.cls for o in report.outputs]
(0.5, ['post_processing'])
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from policies.outputs import split, type_name
from policies.report import MechanismUse, OutputInfo, PolicyReport

RELEASED_BY_SITE = (
    "computed from values the site's releaser released (the function never saw a row): "
    "post-processing of DP releases"
)


def apply_blind_run(ledger: list[dict[str, Any]], value: Any, report: PolicyReport) -> None:
    """Fold the releaser's ``ledger`` and the function's returned ``value`` into ``report``."""
    assert report.budget is not None
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for entry in ledger:
        groups[(str(entry.get("helper")), str(entry.get("mechanism")))].append(entry)
    report.budget.mechanisms = [
        MechanismUse(
            name=f"{helper} ({mechanism})",
            invocations=len(entries),
            epsilon_each=max(float(e.get("epsilon") or 0.0) for e in entries),
            epsilon_total=math.fsum(float(e.get("epsilon") or 0.0) for e in entries),
            delta_total=math.fsum(float(e.get("delta") or 0.0) for e in entries),
            composition="sequential, counted by the site's releaser",
            d_in=None,
            d_in_source="the dataset policy's privacy unit (set by the site)",
        )
        for (helper, mechanism), entries in groups.items()
    ]
    report.budget.measured_epsilon = math.fsum(float(e.get("epsilon") or 0.0) for e in ledger)
    report.budget.measured_delta = math.fsum(float(e.get("delta") or 0.0) for e in ledger)
    report.outputs = [
        OutputInfo(name=name, type=type_name(part), cls="post_processing", reason=RELEASED_BY_SITE)
        for name, part in split(value)
    ]
    report.notes.insert(
        0,
        "Data-blind request: the function ran in a sandbox that holds no private data, and "
        f"asked the site's releaser for {len(ledger)} DP release(s); the releaser enforces the "
        "declared budget and the dataset's privacy unit itself, so this request is DP by "
        "construction.",
    )
    if not ledger:
        report.notes.append(
            "It released nothing on the mock: its outputs do not depend on the data."
        )
