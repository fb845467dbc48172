"""Submitting, checking, approving and denying code requests.

The gate lives here, not in the routes, so the API, the web pages and auto-approval all
pass through the same rules: nobody approves their own request; a ``blocked`` report can
be overridden only by an owner with a written justification; approval and the budget
reservation commit together or not at all.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from datasite import audit_log, ledger
from datasite.contract.job import RequestKind
from datasite.contract.lifecycle import PENDING, State, TransitionError, check_transition
from datasite.db.models import (
    Asset,
    CodeRequest,
    Dataset,
    Project,
    User,
    utcnow,
)
from datasite.db.statements import DECIDE, REQUEST_WITH_VIEW, show_written
from datasite.errors import Forbidden, NotFound
from datasite.policy_store import effective_policy

if TYPE_CHECKING:
    from datasite.config import Settings
    from datasite.contract.job import JobSpec
    from datasite.contract.schemas import CodeRequestIn
    from datasite.execution.executor import Executor as JobExecutor
    from datasite.runs import Runner, Sessions
    from datasite.store.storage import Storage
    from datasite.watch import StateWatch
    from policies.schema import Policy

log = logging.getLogger("datasite.review")


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()


def declaration_of(request: CodeRequest) -> dict[str, Any]:
    return {
        "kind": request.kind,
        "epsilon": request.epsilon,
        "delta": request.delta,
        "mechanisms": list(request.mechanisms),
        "context": dict(request.context_options),
    }


def with_privacy_unit(options: dict[str, Any], policy: Policy) -> dict[str, Any]:
    """A request's Context options with the policy's privacy unit in place of its own.

    >>> from policies.schema import Policy
    >>> with_privacy_unit({"queries": 2, "max_contributions": 50}, Policy(max_contributions=3))
    {'queries': 2, 'max_contributions': 3}
    """
    return {**options, "max_contributions": policy.max_contributions}


def resolve_bindings(
    db: Session, dataset_name: str, bindings: dict[str, str]
) -> tuple[Dataset, dict[str, Asset]]:
    """The dataset and, per function argument, the asset it binds to."""
    dataset = db.scalar(select(Dataset).where(Dataset.name == dataset_name))
    if dataset is None:
        raise NotFound(f"There is no dataset {dataset_name!r}.")
    by_name = {a.name: a for a in dataset.assets}
    missing = sorted(set(bindings.values()) - set(by_name))
    if missing:
        raise NotFound(
            f"Dataset {dataset.name!r} has no asset {', '.join(map(repr, missing))}. "
            f"Assets: {', '.join(by_name)}."
        )
    return dataset, {arg: by_name[name] for arg, name in bindings.items()}


class Reviewer:
    """The request workflow of one site.

    It is given what it uses (see ``datasite.runs.Runner``), and the ``runner`` that
    starts the run an approval claims.
    """

    def __init__(
        self,
        sessions: Sessions,
        settings: Settings,
        executor: Callable[[], JobExecutor],
        watch: StateWatch,
        background: Executor,
        store: Storage,
        runner: Runner,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.executor = executor
        self.watch = watch
        self.background = background
        self.store = store
        self.runner = runner

    # -- submission and checking -------------------------------------------------------

    def submit(self, db: Session, body: CodeRequestIn, author: User, address: str) -> CodeRequest:
        """Store a request verbatim and queue its policy check; the caller commits."""
        project = db.scalar(
            select(Project).where(Project.name == body.project, Project.owner_id == author.id)
        )
        if project is None:
            raise NotFound(f"You have no project {body.project!r}. Create it first.")
        dataset, bound = resolve_bindings(db, body.dataset, body.bindings)
        request = CodeRequest(
            project_id=project.id,
            author_id=author.id,
            dataset_id=dataset.id,
            entry=body.entry,
            source=body.source,
            source_hash=source_hash(body.source),
            kind=body.kind,
            bindings={arg: asset.id for arg, asset in bound.items()},
            epsilon=body.epsilon,
            delta=body.delta,
            mechanisms=body.mechanisms,
            context_options=body.context.model_dump(),
            description=body.description,
            runs_allowed=body.runs,
            state=State.SUBMITTED.value,
        )
        db.add(request)
        db.flush()
        policy = effective_policy(db, dataset.id, author.id)
        request.context_options = with_privacy_unit(request.context_options, policy)
        ledger.ensure_grant(
            db, author.id, dataset.id, policy.default_total_epsilon, policy.default_total_delta
        )
        audit_log.record(
            db,
            "request_submitted",
            actor=author,
            address=address,
            target_type="request",
            target_id=request.id,
            source_hash=request.source_hash,
            epsilon=request.epsilon,
            delta=request.delta,
        )
        return request

    def schedule_check(self, request_id: int) -> None:
        self.background.submit(self._check_logged, request_id)

    def _check_logged(self, request_id: int) -> None:
        try:
            self.check(request_id)
        except Exception:
            log.exception("checking request %s failed", request_id)

    def check(self, request_id: int) -> None:
        """Run the policy checker on the mock data and attach the report (-> ``checked``)."""
        from policies.checker import check_request

        with self.sessions() as db:
            request = db.get(CodeRequest, request_id)
            if request is None or request.state not in PENDING:
                return
            policy = effective_policy(db, request.dataset_id, request.author_id)
            mocks = self._mock_paths({a: db.get(Asset, i) for a, i in request.bindings.items()})
            source, entry, declaration = request.source, request.entry, declaration_of(request)
        report = check_request(source, entry, declaration, policy, mocks, self.executor())
        with self.sessions() as db:
            request = db.get(CodeRequest, request_id)
            check_transition(request.state, State.CHECKED)
            request.state = State.CHECKED.value
            request.context_options = with_privacy_unit(request.context_options, policy)
            request.policy_report = report.model_dump(mode="json")
            request.policy_version = policy.version
            request.updated_at = utcnow()
            audit_log.record(
                db,
                "request_checked",
                actor=None,
                target_type="request",
                target_id=request_id,
                verdict=report.verdict,
                policy_version=policy.version,
            )
            auto = (
                policy.auto_approve
                and report.verdict == "pass"
                and RequestKind(request.kind).data_blind
            )
            launch = self._auto_approve(db, request_id) if auto else None
            db.commit()
        self.watch.changed(request_id)
        if launch is not None:
            self.runner.launch(*launch)

    def _mock_paths(self, bound: dict[str, Asset]) -> dict[str, str]:
        return {arg: str(self.store.path(asset.mock_path)) for arg, asset in bound.items()}

    def precheck(self, db: Session, body: CodeRequestIn, author: User) -> dict[str, Any]:
        """The report the site would give ``body``, checked on the mock; nothing is stored.

        The checker runs the submitted code (a dry-run), which can take as long as its
        limits allow: ``db``'s transaction ends before it starts, so no lock (on SQLite,
        the database's single write lock) is held while user code runs.
        """
        from policies.checker import check_request

        dataset, bound = resolve_bindings(db, body.dataset, body.bindings)
        policy = effective_policy(db, dataset.id, author.id)
        mocks = self._mock_paths(bound)
        db.rollback()  # read only: end the transaction before any user code runs
        declaration = {
            "kind": body.kind,
            "epsilon": body.epsilon,
            "delta": body.delta,
            "mechanisms": body.mechanisms,
            "context": body.context.model_dump(),
        }
        report = check_request(
            body.source,
            body.entry,
            declaration,
            policy,
            mocks,
            self.executor(),
        )
        return report.model_dump(mode="json")

    def check_pending(self) -> None:
        """Requests a restart interrupted before their check get checked now."""
        with self.sessions() as db:
            ids = list(
                db.scalars(select(CodeRequest.id).where(CodeRequest.state == State.SUBMITTED.value))
            )
        for request_id in ids:
            self.schedule_check(request_id)

    def recheck_dataset(self, db: Session, dataset_id: int) -> None:
        """A policy changed: requests still awaiting a decision are checked again."""
        ids = list(
            db.scalars(
                select(CodeRequest.id).where(
                    CodeRequest.dataset_id == dataset_id, CodeRequest.state == State.CHECKED.value
                )
            )
        )
        for request_id in ids:
            db.execute(
                update(CodeRequest)
                .where(CodeRequest.id == request_id, CodeRequest.state == State.CHECKED.value)
                .values(state=State.SUBMITTED.value)
            )
        db.commit()
        for request_id in ids:
            self.schedule_check(request_id)

    # -- decisions ---------------------------------------------------------------------

    def approve(
        self,
        request_id: int,
        actor: User,
        justification: str | None,
        address: str = "",
        db: Session | None = None,
        defer: Callable[[Callable[[], None]], None] | None = None,
    ) -> CodeRequest:
        """Approve, reserve the budget and claim the first run in one transaction, then
        hand the run to the executor; returns the request as approved, with everything a
        request view reads already loaded.

        ``db`` is a session to approve in (the API's, which has just read the actor's
        token: one transaction instead of two); this commits it. A new one by default.

        ``defer`` is given what is left once the approval has committed (waking whoever
        waits on the request and starting the run), for a caller that answers first: the
        API sends its reply before the run's start competes with it for the CPU. It
        happens at once by default.
        """
        with nullcontext(db) if db is not None else self.sessions() as session:
            approved, (run_id, spec) = self._approve(
                session, request_id, actor, justification, address
            )
            session.commit()

        def start() -> None:
            self.watch.changed(request_id)
            self.runner.launch(run_id, spec)

        if defer is None:
            start()
        else:
            defer(start)
        return approved

    def _auto_approve(self, db: Session, request_id: int) -> tuple[int, JobSpec] | None:
        """Approve a request the policy lets through, inside the check's own transaction,
        so nobody ever sees it ``checked`` and waiting; None leaves it for a human."""
        try:
            with db.begin_nested():
                return self._approve(db, request_id, None, None, "")[1]
        except (ledger.BudgetError, TransitionError) as exc:
            log.info("request %s left for a human: %s", request_id, exc)
            return None

    def _approve(
        self,
        db: Session,
        request_id: int,
        actor: User | None,
        justification: str | None,
        address: str,
    ) -> tuple[CodeRequest, tuple[int, JobSpec]]:
        """The approval's transaction, uncommitted: the request as approved (its view
        loaded, for the answer) and the claimed first run."""
        target = State.APPROVED if actor is not None else State.AUTO_APPROVED
        request = db.execute(REQUEST_WITH_VIEW, {"id": request_id}).unique().scalar_one_or_none()
        if request is None:
            raise NotFound(f"There is no code request {request_id}.")
        if actor is not None:
            self._gate(request, actor, justification)
        check_transition(request.state, target)
        policy = effective_policy(db, request.dataset_id, request.author_id)
        grant = ledger.ensure_grant(
            db,
            request.author_id,
            request.dataset_id,
            policy.default_total_epsilon,
            policy.default_total_delta,
        )
        overridden = bool(
            request.policy_report and request.policy_report.get("verdict") == "blocked"
        )
        event_id = audit_log.record(
            db,
            "request_auto_approved" if actor is None else "request_approved",
            actor=actor,
            address=address,
            target_type="request",
            target_id=request_id,
            epsilon=request.epsilon * request.runs_allowed,
            override=overridden,
            justification=justification if overridden else None,
        )
        decided = {
            "state": target.value,
            "decided_by": actor.id if actor else None,
            "override_justification": justification if overridden else None,
            "updated_at": utcnow(),
        }
        if db.execute(DECIDE, {"request_id": request_id, **decided}).rowcount != 1:
            raise TransitionError("This request was decided by someone else just now.")
        ledger.reserve(db, request, grant, event_id)
        show_written(request, **decided)  # only once the budget is reserved too
        return request, self.runner.claim(db, request_id, actor, address)

    @staticmethod
    def _gate(request: CodeRequest, actor: User, justification: str | None) -> None:
        if actor.role not in ("owner", "reviewer"):
            raise Forbidden("Only an owner or a reviewer may approve requests.")
        if request.author_id == actor.id:
            raise Forbidden("Nobody approves their own request; ask another reviewer.")
        report = request.policy_report or {}
        if report.get("verdict") == "blocked":
            blocking = [f for f in report.get("findings", []) if f.get("severity") == "blocking"]
            listed = "; ".join(
                f"line {f.get('line')}: {f.get('message')}" if f.get("line") else f.get("message")
                for f in blocking
            )
            if actor.role != "owner":
                raise Forbidden(
                    f"The policy report blocks this request ({listed}). Only an owner can "
                    "override it, with a written justification."
                )
            if not (justification and justification.strip()):
                raise Forbidden(
                    f"The policy report blocks this request ({listed}). To approve it anyway, "
                    "give a written justification for the override."
                )

    def deny(self, request_id: int, actor: User, reason: str, address: str = "") -> None:
        with self.sessions() as db:
            request = db.get(CodeRequest, request_id)
            if request is None:
                raise NotFound(f"There is no code request {request_id}.")
            if request.author_id == actor.id:
                raise Forbidden("Nobody decides on their own request; ask another reviewer.")
            check_transition(request.state, State.DENIED)
            moved = db.execute(
                update(CodeRequest)
                .where(CodeRequest.id == request_id, CodeRequest.state == State.CHECKED.value)
                .values(
                    state=State.DENIED.value,
                    deny_reason=reason,
                    decided_by=actor.id,
                    updated_at=utcnow(),
                )
            )
            if moved.rowcount != 1:
                raise TransitionError("This request was decided by someone else just now.")
            audit_log.record(
                db,
                "request_denied",
                actor=actor,
                address=address,
                target_type="request",
                target_id=request_id,
                reason=reason,
            )
            db.commit()
        self.watch.changed(request_id)
