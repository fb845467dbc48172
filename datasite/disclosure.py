"""Disclosure control of a raw-data run's non-DP outputs, on the server, before release.

When the dataset's policy lets raw-data requests return outputs that are not DP
(``non_dp_outputs`` ``review`` or ``allow``), ``Runner._finish`` calls
:func:`review_outputs` before it keeps a successful run's result:

- each table output (DataFrame, Series) is checked with ``policies.sdc`` against the real
  rows it was computed from; failing cells are suppressed (NaN, the blob re-encoded) or
  the result is withheld for the owner, per ``Policy.sdc.on_fail``;
- a row-level table (one carrying the policy's ``k_anonymity_qis`` as columns) is checked
  for k-anonymity on them instead (``datasite.anonymity``) and withheld below
  ``min_group_size``;
- each model output is attacked with ``policies.membership``; a non-DP model above
  ``Policy.mia_max_auc`` is withheld, a diffprivlib model gets the numbers as evidence.

Both need the real table, which the server reads here (site code, not the researcher's:
the released model is loaded through the ``load_model`` allowlist and only its trusted
scikit-learn/diffprivlib methods run). The findings name cells and rules, never values.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from datasite.contract.job import JobResult, RequestKind
from datasite.contract.results import FORMAT, decode_result, encode_result

if TYPE_CHECKING:
    import pandas as pd

    from datasite.store.storage import Storage

log = logging.getLogger("datasite.disclosure")
MAX_LISTED = 40


def _walk(node: Any, path: str, found: list[tuple[str, dict[str, Any]]]) -> None:
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if kind in ("dataframe", "series", "model"):
        found.append((path, node))
    elif kind in ("list", "tuple"):
        for i, item in enumerate(node.get("items") or []):
            _walk(item, f"{path}[{i}]", found)
    elif kind == "dict":
        for i, (key, value) in enumerate(node.get("items") or []):
            label = key.get("value") if isinstance(key, dict) else None
            label = repr(label) if isinstance(label, str | int | float) else str(i)
            _walk(value, f"{path}[{label}]", found)


def _raw_for(table: Any, raws: list[pd.DataFrame]) -> pd.DataFrame | None:
    """The real table whose columns hold the output's grouping columns, if any."""
    names = [n for n in table.index.names if n is not None]
    for raw in raws:
        if names and all(n in raw.columns for n in names):
            return raw
    return None


def check_outputs(
    result: JobResult, policy: Any, raws: list[pd.DataFrame]
) -> tuple[JobResult, list[str], list[str]]:
    """``(result, withhold reasons, notes for the owner)`` for one run's outputs."""
    from datasite.anonymity import check_rows, row_level_qis
    from policies.membership import AttackReport, attack_model, is_dp_model
    from policies.sdc import check_table

    rules = policy.sdc_rules()
    outputs: list[tuple[str, dict[str, Any]]] = []
    _walk((result.manifest or {}).get("root"), "output", outputs)
    blobs = dict(result.blobs)
    reasons: list[str] = []
    notes: list[str] = []
    for path, node in outputs:
        value = decode_result({"format": FORMAT, "root": node}, blobs)
        if node["type"] == "model":
            report = AttackReport(f"{type(value).__name__}", None, None, None, note="no table")
            for raw in raws:
                try:
                    report = attack_model(value, raw)
                except Exception as exc:  # noqa: BLE001 - the attack failing withholds below
                    report.note = f"the attack failed ({type(exc).__name__})"
                if report.auc is not None:
                    break
            notes.append(f"{path}: {report.describe()}")
            if is_dp_model(value):
                continue
            if report.auc is None:
                reasons.append(f"{path} is a non-DP model the membership attack could not test")
            elif report.auc > policy.mia_max_auc:
                reasons.append(
                    f"{path} is a non-DP model whose membership-attack AUC {report.auc:.3f} "
                    f"exceeds the policy's {policy.mia_max_auc:g}"
                )
            continue
        if row_level_qis(value, policy):  # rows, not cells: k on the declared QIs
            reason, note = check_rows(value, policy, name=path)
            notes.append(note)
            reasons.extend([reason] if reason else [])
            continue
        check = check_table(value, rules, _raw_for(value, raws), name=path)
        described = [f.describe() for f in check.findings]
        notes.extend(described[:MAX_LISTED])
        if len(described) > MAX_LISTED:
            notes.append(f"{path}: and {len(described) - MAX_LISTED} more cells")
        unverifiable = any(f.rule == "unverifiable" for f in check.findings)
        if unverifiable or (check.findings and rules.on_fail == "withhold"):
            reasons.append(f"{path} fails disclosure control ({len(check.findings)} findings)")
        elif check.changed:
            _, fresh = encode_result(check.table)
            blobs[node["blob"]] = next(iter(fresh.values()))
    if blobs != result.blobs:
        result = result.model_copy(update={"blobs": blobs})
    return result, reasons, notes


def review_outputs(
    sessions: Any, store: Storage, run_id: int, result: JobResult
) -> tuple[JobResult, list[str], list[str]]:
    """Check a finished run's outputs when its request is raw-data and its policy lets
    non-DP outputs through; otherwise return ``result`` unchanged."""
    if not result.ok or not result.manifest:
        return result, [], []
    import pandas as pd

    from datasite.db.models import Asset, RequestRun
    from datasite.policy_store import effective_policy

    with sessions() as db:
        request = db.get(RequestRun, run_id).request
        if request.kind != RequestKind.MECHANISM.value:
            return result, [], []
        policy = effective_policy(db, request.dataset_id, request.author_id)
        paths = [store.path(db.get(Asset, a).real_path) for a in request.bindings.values()]
        db.rollback()
    if policy.non_dp_outputs == "block":
        return result, [], []
    try:
        return check_outputs(result, policy, [pd.read_parquet(p) for p in paths])
    except Exception as exc:  # noqa: BLE001 - a check that cannot run never releases
        log.exception("disclosure checks failed on run %s", run_id)
        return result, [f"the disclosure checks could not run ({type(exc).__name__})"], []
