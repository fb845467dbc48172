"""Dataset policies, per-researcher overrides, and the site's pre-check on mock data."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from pydantic import ValidationError
from sqlalchemy.orm import Session

from datasite import audit_log, policy_store
from datasite.api.datasets import find_dataset
from datasite.api.deps import client_address, current_user, db_session, owner_only, require, site
from datasite.api.errors import describe_validation
from datasite.api.users import find_user
from datasite.contract.schemas import CodeRequestIn
from datasite.db.models import User
from datasite.errors import Invalid
from datasite.site import Site
from policies.schema import Policy

router = APIRouter(tags=["policies"])


def _validated(document: dict[str, Any], partial: bool) -> None:
    try:
        if partial:
            Policy.model_validate({**Policy().model_dump(mode="json"), **document})
        else:
            Policy.model_validate(document)
    except ValidationError as exc:
        raise Invalid(f"Invalid policy: {describe_validation(exc.errors())}.") from exc


def _refuse_less_anonymous_mocks(dataset: Any, policy: Policy, the_site: Site) -> None:
    """A policy whose k-anonymity the stored mocks do not meet is refused (``datasite.
    anonymity``): the mock researchers already hold must not be less anonymous than it."""
    from datasite.anonymity import refuse_less_anonymous_mocks, stored_mocks

    refuse_less_anonymous_mocks(policy, stored_mocks(dataset, the_site.store))


@router.get("/datasets/{name}/policy")
def get_policy(
    name: str, user: User = Depends(current_user), db: Session = Depends(db_session)
) -> dict[str, Any]:
    """The policy in force for the caller (a researcher sees their overrides applied)."""
    dataset = find_dataset(db, name, user)
    if user.role == "researcher":
        policy = policy_store.effective_policy(db, dataset.id, user.id)
    else:
        policy = policy_store.dataset_policy(db, dataset.id)
    return {**policy.model_dump(mode="json"), "version": policy.version}


@router.put("/datasets/{name}/policy")
def set_policy(
    name: str,
    request: Request,
    document: dict[str, Any] = Body(...),
    owner: User = Depends(owner_only),
    db: Session = Depends(db_session),
    the_site: Site = Depends(site),
) -> dict[str, Any]:
    dataset = find_dataset(db, name)
    document.pop("version", None)
    _validated(document, partial=False)
    _refuse_less_anonymous_mocks(dataset, Policy.model_validate(document), the_site)
    version = policy_store.save(db, dataset.id, None, document)
    audit_log.record(
        db,
        "policy_set",
        actor=owner,
        address=client_address(request),
        target_type="dataset",
        target_id=dataset.name,
        version=version,
    )
    db.commit()
    the_site.reviewer.recheck_dataset(db, dataset.id)
    policy = policy_store.dataset_policy(db, dataset.id)
    return {**policy.model_dump(mode="json"), "version": policy.version}


@router.put("/datasets/{name}/policy/overrides/{email}")
def set_override(
    name: str,
    email: str,
    request: Request,
    document: dict[str, Any] = Body(...),
    owner: User = Depends(owner_only),
    db: Session = Depends(db_session),
    the_site: Site = Depends(site),
) -> dict[str, Any]:
    dataset = find_dataset(db, name)
    researcher = find_user(db, email)
    _validated(document, partial=True)
    version = policy_store.save(db, dataset.id, researcher.id, document)
    audit_log.record(
        db,
        "policy_override_set",
        actor=owner,
        address=client_address(request),
        target_type="dataset",
        target_id=dataset.name,
        researcher=researcher.email,
        version=version,
        fields=sorted(document),
    )
    db.commit()
    the_site.reviewer.recheck_dataset(db, dataset.id)
    policy = policy_store.effective_policy(db, dataset.id, researcher.id)
    return {**policy.model_dump(mode="json"), "version": policy.version}


@router.post("/precheck")
def precheck(
    body: CodeRequestIn,
    user: User = Depends(require("researcher")),
    db: Session = Depends(db_session),
    the_site: Site = Depends(site),
) -> dict[str, Any]:
    """The report the site would give this request, from a run on the mock; nothing stored."""
    return the_site.reviewer.precheck(db, body, user)
