"""Dataset policies, per-researcher overrides, and the site's pre-check on mock data.

Setting a policy or an override is ``datasite.policy_settings``'s work."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from sqlalchemy.orm import Session

from datasite import policy_settings
from datasite.accounts import find_user
from datasite.api.deps import client_address, current_user, db_session, owner_only, require, site
from datasite.contract.schemas import CodeRequestIn
from datasite.datasets import find_dataset
from datasite.db.models import User
from datasite.site import Site

router = APIRouter(tags=["policies"])


@router.get("/datasets/{name}/policy")
def get_policy(
    name: str, user: User = Depends(current_user), db: Session = Depends(db_session)
) -> dict[str, Any]:
    """The policy in force for the caller (a researcher sees their overrides applied)."""
    dataset = find_dataset(db, name, user)
    return policy_settings.policy_document(policy_settings.policy_for(db, dataset, user))


@router.put("/datasets/{name}/policy")
def set_policy(
    name: str,
    request: Request,
    document: dict[str, Any] = Body(...),
    owner: User = Depends(owner_only),
    db: Session = Depends(db_session),
    the_site: Site = Depends(site),
) -> dict[str, Any]:
    policy = policy_settings.set_policy(
        db, find_dataset(db, name), document, actor=owner, address=client_address(request),
        store=the_site.store, reviewer=the_site.reviewer,
    )  # fmt: skip
    return policy_settings.policy_document(policy)


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
    policy = policy_settings.set_override(
        db, dataset, find_user(db, email), document, actor=owner,
        address=client_address(request), reviewer=the_site.reviewer,
    )  # fmt: skip
    return policy_settings.policy_document(policy)


@router.post("/precheck")
def precheck(
    body: CodeRequestIn,
    user: User = Depends(require("researcher")),
    db: Session = Depends(db_session),
    the_site: Site = Depends(site),
) -> dict[str, Any]:
    """The report the site would give this request, from a run on the mock; nothing stored."""
    return the_site.reviewer.precheck(db, body, user)
