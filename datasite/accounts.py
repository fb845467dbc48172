"""Accounts: finding one, and the owner creating, disabling and changing the role of others.

The routes in ``datasite.api.users`` call these; the budget and policy services find
researchers with ``find_user``. Refusals are ``datasite.errors``.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from datasite import audit_log
from datasite.auth.passwords import generate_password, hash_password
from datasite.auth.tokens import revoke_all_tokens
from datasite.contract.schemas import Role, UserCreate, UserUpdate
from datasite.db.models import User
from datasite.errors import Conflict, Invalid, NotFound

#: The roles that review requests and see what researchers may not (exact row counts,
#: how long a run took, withheld results). The one definition: the API's dependencies
#: (``datasite.api.deps``), the web pages' (``datasite.web.access``) and the services
#: import it.
STAFF: tuple[Role, ...] = ("owner", "reviewer")


def find_user(db: Session, email: str) -> User:
    """The account with this email (spaces and case do not matter), else ``NotFound``.

    >>> from sqlalchemy import create_engine
    >>> from datasite.db.models import Base
    >>> engine = create_engine("sqlite://"); Base.metadata.create_all(engine)
    >>> db = Session(engine)
    >>> db.add(User(email="bob@uni.example", name="Bob", role="researcher", password_hash=""))
    >>> find_user(db, " Bob@Uni.example").name
    'Bob'
    >>> find_user(db, "eve@uni.example")
    Traceback (most recent call last):
    ...
    datasite.errors.NotFound: There is no account 'eve@uni.example'.
    """
    user = db.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise NotFound(f"There is no account {email!r}.")
    return user


def list_users(db: Session) -> list[User]:
    """Every account, oldest first."""
    return list(db.scalars(select(User).order_by(User.id)))


def create_user(
    db: Session, body: UserCreate, *, owner: User, address: str
) -> tuple[User, str | None]:
    """A new account, audited and committed, with the password the site generated when
    ``body`` gave none (shown once, to the owner). ``Conflict`` for a taken email."""
    if db.scalar(select(User.id).where(User.email == body.email)) is not None:
        raise Conflict(f"An account {body.email!r} exists already.")
    generated = None if body.password else generate_password()
    user = User(
        email=body.email,
        name=body.name,
        role=body.role,
        password_hash=hash_password(body.password or generated),
        institution=body.institution,
        website=body.website,
    )
    db.add(user)
    db.flush()
    audit_log.record(
        db,
        "user_created",
        actor=owner,
        address=address,
        target_type="user",
        target_id=user.email,
        role=user.role,
    )
    db.commit()
    return user, generated


def update_user(db: Session, email: str, body: UserUpdate, *, owner: User, address: str) -> User:
    """Disable, re-enable or change the role of an account, audited and committed.

    The owner cannot change their own account (``Conflict``): a site must keep an owner.
    Disabling revokes the account's sessions, so re-enabling it later revives none.
    """
    user = find_user(db, email)
    if user.id == owner.id:
        raise Conflict("You cannot disable or demote your own account.")
    changes = body.model_dump(exclude_none=True)
    if not changes:
        raise Invalid("Invalid request: give 'disabled' or 'role' to change.")
    for field, value in changes.items():
        setattr(user, field, value)
    if changes.get("disabled"):  # re-enabling later must not revive these sessions
        revoke_all_tokens(db, user.id)
    audit_log.record(
        db,
        "user_updated",
        actor=owner,
        address=address,
        target_type="user",
        target_id=user.email,
        **changes,
    )
    db.commit()
    return user
