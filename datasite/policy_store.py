"""Where a dataset's policy and its per-researcher overrides are kept.

The effective policy for a request is the dataset's policy (or the default policy when the
owner set none) with the researcher's override fields laid over it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from datasite.db.models import PolicySetting, utcnow
from datasite.db.statements import POLICY_AND_OVERRIDE
from policies.schema import DEFAULT_POLICY, Policy


def _setting(db: Session, dataset_id: int, user_id: int | None) -> PolicySetting | None:
    return db.scalar(
        select(PolicySetting).where(
            PolicySetting.dataset_id == dataset_id, PolicySetting.user_id == user_id
        )
    )


def _policy(document: dict[str, Any] | None) -> Policy:
    """A stored dataset policy, or the default policy when the owner set none."""
    return Policy.model_validate(document) if document is not None else DEFAULT_POLICY


def dataset_policy(db: Session, dataset_id: int) -> Policy:
    setting = _setting(db, dataset_id, None)
    return _policy(setting.document if setting else None)


def effective_policy(db: Session, dataset_id: int, user_id: int) -> Policy:
    """The dataset's policy with the researcher's overrides applied (validated again)."""
    documents = dict(
        db.execute(POLICY_AND_OVERRIDE, {"dataset": dataset_id, "user": user_id}).all()
    )
    base = _policy(documents.get(None))
    override = documents.get(user_id)
    if not override:
        return base
    return Policy.model_validate({**base.model_dump(mode="json"), **override})


def save(db: Session, dataset_id: int, user_id: int | None, document: dict[str, Any]) -> str:
    """Store a policy document (already validated) and return its version."""
    version = Policy.model_validate(
        document
        if user_id is None
        else {**dataset_policy(db, dataset_id).model_dump(mode="json"), **document}
    ).version
    setting = _setting(db, dataset_id, user_id)
    if setting is None:
        setting = PolicySetting(
            dataset_id=dataset_id, user_id=user_id, document=document, version=version
        )
        db.add(setting)
    else:
        setting.document, setting.version, setting.updated_at = document, version, utcnow()
    return version
