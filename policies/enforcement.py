"""Runtime enforcement for raw-data requests: does the real run match what was approved?

The real run of a raw-data request is recorded by the same instrumentation as its
dry-run (``policies.instrument.recording_call``). Before anything is released, the site
compares that record with the request's declaration and with the dry-run the reviewer
approved. A mismatch withholds the result for the owner; the charge stays.

>>> report = {"budget": {"mechanisms": [{"name": "make_laplace"}], "measured_epsilon": 0.5}}
>>> real = {"recorded": True, "spend": {"epsilon": 1.0, "groups": [{"name": "make_laplace"}],
...                                       "diffprivlib": [], "contexts": []}}
>>> withhold_reasons(0.5, 0.0, report, real)
['the run spent epsilon 1 on the private data, more than the declared 0.5']
"""

from __future__ import annotations

from typing import Any

from policies import dp_libraries
from policies.schema import TOLERANCE


def withhold_reasons(
    epsilon: float, delta: float, dry_run_report: dict[str, Any] | None, real: dict[str, Any]
) -> list[str]:
    """Why the real run's result must wait for the owner (empty: it may be released)."""
    if not real.get("recorded"):
        return ["the run's releases were not recorded"]
    spend = real.get("spend") or {}
    reasons = []
    spent = spend.get("epsilon")
    if spent is None:
        reasons.append("the run made a release whose privacy loss could not be measured")
    elif spent > epsilon * (1 + TOLERANCE):
        reasons.append(
            f"the run spent epsilon {spent:.6g} on the private data, more than the declared "
            f"{epsilon:.6g}"
        )
    if (spend.get("delta") or 0.0) > delta * (1 + TOLERANCE) + 1e-15:
        reasons.append(f"the run spent delta {spend['delta']:.3g}, more than declared {delta:g}")
    budget = (dry_run_report or {}).get("budget") or {}
    seen = {str(m.get("name")) for m in budget.get("mechanisms") or []}
    libraries = dp_libraries.instrumented()
    used = {
        str(entry.get(library.name_key))
        for library in libraries
        if not library.allotment
        for entry in spend.get(library.spend_key) or []
    }
    new = sorted(used - seen)
    if new:
        reasons.append(f"the run used {', '.join(new)}, which the dry-run on the mock did not")
    allotted = any(spend.get(library.spend_key) for library in libraries if library.allotment)
    released = bool(used or allotted)
    if seen and not released:
        reasons.append("the run recorded no DP release although the dry-run saw some")
    return reasons
