"""The datasets, accounts, budgets and policy services, called directly (no HTTP).

Each service takes the session, the acting user and its collaborators as arguments, so a
test hands it a fake reviewer and checks the rule itself: what the routes and the web
pages answer follows from these.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from datasite import accounts, budgets, datasets, policy_settings, policy_store
from datasite.config import Settings
from datasite.contract.schemas import UserCreate, UserUpdate
from datasite.db.models import AuditEvent, BudgetGrant, CodeRequest, Dataset, User
from datasite.errors import BudgetError, Conflict, Invalid, NotFound
from datasite.site import Site

ADDRESS = "203.0.113.7"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    the_site = Site(Settings(data_dir=tmp_path / "site", dev_mode=True))
    try:
        yield the_site
    finally:
        the_site.close()


class FakeReviewer:
    """Stands in for ``site.reviewer``: remembers which datasets were re-checked."""

    def __init__(self) -> None:
        self.rechecked: list[int] = []

    def recheck_dataset(self, _db: Session, dataset_id: int) -> None:
        self.rechecked.append(dataset_id)


def people(db: Session) -> tuple[User, User, User]:
    """The site's owner, a researcher and a reviewer."""
    owner = db.scalars(select(User).where(User.role == "owner")).one()
    researcher = User(email="bob@uni.example", name="Bob", role="researcher", password_hash="-")
    reviewer = User(email="rita@site.example", name="Rita", role="reviewer", password_hash="-")
    db.add_all([researcher, reviewer])
    db.commit()
    return owner, researcher, reviewer


def add_dataset(db: Session, owner: User, name: str = "Pings") -> Dataset:
    dataset = Dataset(name=name, created_by=owner.id)
    db.add(dataset)
    db.commit()
    return dataset


def actions(db: Session) -> list[str]:
    return list(db.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


def test_an_archived_dataset_is_hidden_from_researchers_and_kept_for_staff(site: Site) -> None:
    with site.sessions() as db:
        owner, researcher, reviewer = people(db)
        add_dataset(db, owner, "Pings")
        add_dataset(db, owner, "Visits")
        datasets.set_archived(db, "Pings", True, owner=owner, address=ADDRESS)
        datasets.set_archived(db, "Pings", True, owner=owner, address=ADDRESS)  # done already

        with pytest.raises(NotFound, match=r"no dataset 'Pings'\. Datasets: Visits\.$"):
            datasets.find_dataset(db, "Pings", researcher)
        assert datasets.find_dataset(db, "Pings", reviewer).archived_at is not None
        assert datasets.find_dataset(db, "Pings").name == "Pings"
        assert [d.name for d in datasets.list_datasets(db, researcher)] == ["Visits"]
        assert [d.name for d in datasets.list_datasets(db, owner)] == ["Pings", "Visits"]
        assert actions(db) == ["dataset_archived"]  # archiving twice records it once

        datasets.set_archived(db, "Pings", False, owner=owner, address=ADDRESS)
        assert datasets.find_dataset(db, "Pings", researcher).archived_at is None


def test_only_staff_see_the_real_tables_row_count(site: Site) -> None:
    from datasite.db.models import Asset

    with site.sessions() as db:
        owner, researcher, reviewer = people(db)
        dataset = add_dataset(db, owner)
        db.add(
            Asset(
                dataset_id=dataset.id, name="pings", columns=[], real_rows=7, mock_rows=100,
                real_path="real", mock_path="mock",
            )
        )  # fmt: skip
        db.commit()
        db.refresh(dataset)
        viewers = (owner, researcher, reviewer)
        rows = {u.role: datasets.dataset_out(dataset, u).assets[0].real_rows for u in viewers}
    assert rows == {"owner": 7, "reviewer": 7, "researcher": None}


def test_the_owner_cannot_demote_or_disable_themselves(site: Site) -> None:
    with site.sessions() as db:
        owner, researcher, _ = people(db)
        with pytest.raises(Conflict, match="your own account"):
            accounts.update_user(
                db, owner.email.upper(), UserUpdate(role="researcher"), owner=owner, address=""
            )
        with pytest.raises(Invalid, match="give 'disabled' or 'role'"):
            accounts.update_user(db, researcher.email, UserUpdate(), owner=owner, address="")
        db.refresh(owner)
        assert owner.role == "owner" and actions(db) == []

        changed = accounts.update_user(
            db, researcher.email, UserUpdate(disabled=True), owner=owner, address=ADDRESS
        )
        assert changed.disabled
        event = db.scalars(select(AuditEvent)).one()
        assert (event.action, event.target_id, event.detail, event.address) == (
            "user_updated", researcher.email, {"disabled": True}, ADDRESS,
        )  # fmt: skip


def test_a_new_account_gets_a_generated_password_only_when_none_is_given(site: Site) -> None:
    with site.sessions() as db:
        owner, _, _ = people(db)
        body = UserCreate(email="ann@uni.example", name="Ann")
        user, generated = accounts.create_user(db, body, owner=owner, address=ADDRESS)
        assert user.role == "researcher" and generated
        with pytest.raises(Conflict, match="exists already"):
            accounts.create_user(db, body, owner=owner, address=ADDRESS)
        given = UserCreate(email="cy@uni.example", name="Cy", password="long-enough-1")
        assert accounts.create_user(db, given, owner=owner, address=ADDRESS)[1] is None
        assert actions(db) == ["user_created", "user_created"]


def test_what_is_left_of_a_budget_is_never_negative(site: Site) -> None:
    with site.sessions() as db:
        owner, researcher, _ = people(db)
        dataset = add_dataset(db, owner)
        grant = budgets.grant_budget(
            db, researcher.email, dataset.name, 1.0, 1e-6, owner=owner, address=ADDRESS
        )
        grant.spent_epsilon, grant.spent_delta = 1.0 + 1e-12, 2e-6  # rounding, an old overrun
        db.commit()
        assert budgets.remaining(grant) == (0.0, 0.0)

        request = CodeRequest(
            author_id=researcher.id, dataset_id=dataset.id, kind="dp", source="", entry="f",
            epsilon=0.5, delta=0.0, runs_allowed=2,
        )  # fmt: skip
        view = budgets.request_budget(db, request)
        assert (view["epsilon"], view["left_epsilon"], view["fits"]) == (1.0, 0.0, False)


def test_a_request_that_exactly_fills_its_budget_fits(site: Site) -> None:
    with site.sessions() as db:
        owner, researcher, _ = people(db)
        dataset = add_dataset(db, owner)
        budgets.grant_budget(db, researcher.email, "Pings", 0.3, 0.0, owner=owner, address="")
        request = CodeRequest(
            author_id=researcher.id, dataset_id=dataset.id, kind="dp", source="", entry="f",
            epsilon=0.1 + 0.2, delta=0.0, runs_allowed=1,
        )  # fmt: skip
        assert budgets.request_budget(db, request)["fits"] is True
        request.runs_allowed = 2
        assert budgets.request_budget(db, request)["fits"] is False


def test_budgets_go_to_researchers_on_live_datasets_only(site: Site) -> None:
    with site.sessions() as db:
        owner, researcher, reviewer = people(db)
        add_dataset(db, owner)
        with pytest.raises(Invalid, match="is a reviewer, not a researcher"):
            budgets.grant_budget(db, reviewer.email, "Pings", 1.0, 0.0, owner=owner, address="")
        grant = budgets.grant_budget(
            db, researcher.email, "Pings", 2.0, 0.0, owner=owner, address=ADDRESS
        )
        grant.spent_epsilon = 1.5
        db.commit()
        with pytest.raises(BudgetError, match="cannot be lower"):
            budgets.grant_budget(db, researcher.email, "Pings", 1.0, 0.0, owner=owner, address="")
        db.rollback()
        datasets.set_archived(db, "Pings", True, owner=owner, address="")
        with pytest.raises(Conflict, match="is archived"):
            budgets.grant_budget(db, researcher.email, "Pings", 3.0, 0.0, owner=owner, address="")
        assert actions(db) == ["budget_granted", "dataset_archived"]


def test_a_researcher_lists_only_their_own_grants(site: Site) -> None:
    with site.sessions() as db:
        owner, researcher, reviewer = people(db)
        other = User(email="ann@uni.example", name="Ann", role="researcher", password_hash="-")
        db.add(other)
        add_dataset(db, owner)
        for email in (researcher.email, other.email):
            budgets.grant_budget(db, email, "Pings", 1.0, 0.0, owner=owner, address="")

        def emails(viewer: User, **filters: str) -> list[str]:
            return [g.user.email for g in budgets.list_grants(db, viewer, **filters)]

        assert emails(researcher) == [researcher.email]
        assert emails(reviewer) == [researcher.email, other.email]
        assert emails(owner, researcher=" ANN@uni.example ") == [other.email]
        assert emails(researcher, researcher=other.email) == []
        assert budgets.list_ledger(db, researcher) == []


def test_setting_a_policy_ignores_its_version_audits_and_rechecks(site: Site) -> None:
    reviewer = FakeReviewer()
    with site.sessions() as db:
        owner, _, _ = people(db)
        dataset = add_dataset(db, owner)
        policy = policy_settings.set_policy(
            db, dataset, {"min_group_size": 25, "version": "mine"}, actor=owner,
            address=ADDRESS, store=site.store, reviewer=reviewer, channel="web",
        )  # fmt: skip
        assert policy.min_group_size == 25 and policy.version != "mine"
        assert policy_store.dataset_policy(db, dataset.id).version == policy.version
        event = db.scalars(select(AuditEvent)).one()
        assert (event.action, event.detail) == (
            "policy_set", {"version": policy.version, "channel": "web"},
        )  # fmt: skip
        assert reviewer.rechecked == [dataset.id]


def test_an_invalid_policy_is_refused_and_nothing_changes(site: Site) -> None:
    reviewer = FakeReviewer()
    with site.sessions() as db:
        owner, researcher, _ = people(db)
        dataset = add_dataset(db, owner)
        before = policy_store.dataset_policy(db, dataset.id).version
        with pytest.raises(Invalid, match=r"^Invalid policy: min_group_size"):
            policy_settings.set_policy(
                db, dataset, {"min_group_size": "many"}, actor=owner, address="",
                store=site.store, reviewer=reviewer,
            )  # fmt: skip
        with pytest.raises(Invalid, match=r"^Invalid policy: min_group_size"):
            policy_settings.set_override(
                db, dataset, researcher, {"min_group_size": "many"}, actor=owner, address="",
                reviewer=reviewer,
            )  # fmt: skip
        assert policy_store.dataset_policy(db, dataset.id).version == before
        assert actions(db) == [] and reviewer.rechecked == []


def test_an_override_applies_to_its_researcher_only(site: Site) -> None:
    reviewer = FakeReviewer()
    with site.sessions() as db:
        owner, researcher, staff = people(db)
        dataset = add_dataset(db, owner)
        default = policy_settings.policy_for(db, dataset, researcher).min_group_size
        policy = policy_settings.set_override(
            db, dataset, researcher, {"min_group_size": default + 5}, actor=owner,
            address=ADDRESS, reviewer=reviewer,
        )  # fmt: skip
        assert policy.min_group_size == default + 5
        assert policy_settings.policy_for(db, dataset, researcher).min_group_size == default + 5
        assert policy_settings.policy_for(db, dataset, staff).min_group_size == default
        assert actions(db) == ["policy_override_set"] and reviewer.rechecked == [dataset.id]


def test_an_unused_dataset_is_deleted_with_its_budgets(site: Site) -> None:
    with site.sessions() as db:
        owner, researcher, _ = people(db)
        add_dataset(db, owner)
        budgets.grant_budget(db, researcher.email, "Pings", 1.0, 0.0, owner=owner, address="")
        removed = datasets.delete_dataset(db, "Pings", owner=owner, store=site.store, address="")
        assert removed.outcome == "deleted" and "1 unspent budget(s)" in removed.detail
        assert db.scalar(select(BudgetGrant.id)) is None
        with pytest.raises(NotFound):
            datasets.find_dataset(db, "Pings")
