"""Setting a dataset's policy and a researcher's overrides, for the API and the web form.

Setting one is always the same steps: validate the document, refuse a policy the stored
mocks are less k-anonymous than (``datasite.anonymity``), save it (``policy_store``),
write the audit event, commit, and have the reviewer check the dataset's pending
requests again. The routes (``datasite.api.policies``) and the owner's policy form
(``datasite.web.dataset_pages``) call these functions; refusals are ``datasite.errors``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from datasite import audit_log, policy_store
from datasite.anonymity import refuse_less_anonymous_mocks, stored_mocks
from datasite.db.models import Dataset, User
from datasite.errors import Invalid, describe_validation
from policies.schema import Policy

if TYPE_CHECKING:
    from datasite.review import Reviewer
    from datasite.store.storage import Storage


def validated_policy(document: dict[str, Any], *, partial: bool = False) -> Policy:
    """The policy ``document`` describes, or ``Invalid`` naming each problem.

    ``partial`` checks an override: its fields laid over the default policy.

    >>> validated_policy({"min_group_size": 10}, partial=True).min_group_size
    10
    >>> validated_policy({"min_group_size": "many"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    datasite.errors.Invalid: Invalid policy: min_group_size: Input should be a valid integer, ...
    """
    try:
        if partial:
            return Policy.model_validate({**Policy().model_dump(mode="json"), **document})
        return Policy.model_validate(document)
    except ValidationError as exc:
        raise Invalid(f"Invalid policy: {describe_validation(exc.errors())}.") from exc


def policy_document(policy: Policy) -> dict[str, Any]:
    """A policy as the API answers it: its fields and its ``version``.

    >>> answer = policy_document(Policy(min_group_size=10))
    >>> answer["min_group_size"], answer["version"] == Policy(min_group_size=10).version
    (10, True)
    """
    return {**policy.model_dump(mode="json"), "version": policy.version}


def policy_for(db: Session, dataset: Dataset, viewer: User) -> Policy:
    """The policy in force for ``viewer``: a researcher's with their overrides applied,
    the dataset's own for staff."""
    if viewer.role == "researcher":
        return policy_store.effective_policy(db, dataset.id, viewer.id)
    return policy_store.dataset_policy(db, dataset.id)


def record_policy(
    db: Session,
    dataset: Dataset,
    document: dict[str, Any],
    *,
    actor: User,
    address: str,
    **detail: Any,
) -> str:
    """Save ``document`` (validated already) as the dataset's policy and write its
    ``policy_set`` audit event, in the caller's transaction; returns its version."""
    version = policy_store.save(db, dataset.id, None, document)
    audit_log.record(
        db,
        "policy_set",
        actor=actor,
        address=address,
        target_type="dataset",
        target_id=dataset.name,
        version=version,
        **detail,
    )
    return version


def set_policy(
    db: Session,
    dataset: Dataset,
    document: dict[str, Any],
    *,
    actor: User,
    address: str,
    store: Storage,
    reviewer: Reviewer,
    **detail: Any,
) -> Policy:
    """Make ``document`` the dataset's policy and check its pending requests again.

    Refused with ``Invalid`` when the document is not a policy, or when a stored mock is
    less k-anonymous than it asks (researchers hold that mock already); nothing is saved
    then. A ``version`` in the document is ignored: the site computes it. ``detail`` goes
    into the audit event (the web form adds ``channel="web"``). Commits.
    """
    document = {k: v for k, v in document.items() if k != "version"}
    policy = validated_policy(document)
    refuse_less_anonymous_mocks(policy, stored_mocks(dataset, store))
    record_policy(db, dataset, document, actor=actor, address=address, **detail)
    db.commit()
    reviewer.recheck_dataset(db, dataset.id)
    return policy_store.dataset_policy(db, dataset.id)


def set_override(
    db: Session,
    dataset: Dataset,
    researcher: User,
    document: dict[str, Any],
    *,
    actor: User,
    address: str,
    reviewer: Reviewer,
) -> Policy:
    """Lay ``document``'s fields over the dataset's policy for ``researcher`` alone, and
    check the dataset's pending requests again; returns the researcher's policy. Commits."""
    validated_policy(document, partial=True)
    version = policy_store.save(db, dataset.id, researcher.id, document)
    audit_log.record(
        db,
        "policy_override_set",
        actor=actor,
        address=address,
        target_type="dataset",
        target_id=dataset.name,
        researcher=researcher.email,
        version=version,
        fields=sorted(document),
    )
    db.commit()
    reviewer.recheck_dataset(db, dataset.id)
    return policy_store.effective_policy(db, dataset.id, researcher.id)
