"""Running approved requests on the private data, and keeping what comes back.

A run is claimed in a committed transaction (state ``running``, one run counted; the
first run in the approval's own transaction), handed to the sandbox executor, and
finished from the executor's callback. Results are written under ``results/<run id>/``;
stdout, stderr and tracebacks stay with the owner unless the owner releases them.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Executor, Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, insert, select, update

from datasite import audit_log, ledger
from datasite.contract.job import ContextOptions, JobResult, JobSpec, RequestKind
from datasite.contract.lifecycle import State, TransitionError, check_transition
from datasite.contract.run_args import digest as run_args_digest
from datasite.db.models import Asset, CodeRequest, RequestRun, utcnow
from datasite.db.statements import show_written
from datasite.disclosure import review_outputs
from datasite.errors import NotFound
from datasite.execution.outcome import shown_error_type
from datasite.store.assets import column_types

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from sqlalchemy.orm import Session

    from datasite.config import Settings
    from datasite.db.models import User
    from datasite.execution.executor import Executor as JobExecutor
    from datasite.store.storage import Storage
    from datasite.watch import StateWatch

    #: Opens a session the ``with`` block closes (``Site.sessions``).
    Sessions = Callable[[], AbstractContextManager[Session]]

log = logging.getLogger("datasite.runs")
RUNNABLE = (State.APPROVED, State.AUTO_APPROVED, State.RELEASED)
_REQUESTS = CodeRequest.__table__.c
#: The claim of one run, built once and as a plain table statement: the approval makes
#: it inside its own transaction (see ``datasite.ledger`` on why that matters).
_CLAIM = (
    update(CodeRequest.__table__)
    .where(
        _REQUESTS.id == bindparam("request_id"),
        _REQUESTS.state.in_([s.value for s in RUNNABLE]),
        _REQUESTS.runs_used < _REQUESTS.runs_allowed,
    )
    .values(
        state=State.RUNNING.value, runs_used=_REQUESTS.runs_used + 1, updated_at=bindparam("now")
    )
    .returning(_REQUESTS.runs_used)
)
_NEW_RUN = insert(RequestRun.__table__)
#: Every column a new run starts with, so the run the approval answers with is the row.
_NEW_RUN_DEFAULTS = {
    "state": "running",
    "touched_data": False,
    "stdout": "",
    "stderr": "",
    "detail_released": False,
    "duration_seconds": 0.0,
}
INTERRUPTED = (
    "The datasite stopped while this run was in flight; the run did not finish. It may "
    "have read the private data, so its budget stays spent; how long it ran is unknown."
)
CANCELLED = (
    "The datasite was stopped while this run was in flight; the run was cancelled before "
    "it finished."
)
#: What a cancelled run's researcher is told about its budget (see ``_refund_unused``).
CANCELLED_REFUNDED = " It had read no private data: its budget was refunded."
CANCELLED_KEPT = " It had already read the private data: its budget stays spent."
#: How long a stopping site waits for a cancelled run to answer before killing its worker.
CANCEL_SECONDS = 15.0
RECORDING_HARNESS = "policies.instrument:recording_call"
DEFAULT_HARNESS = "datasite.execution.harness:call_once"
WITHHELD = (
    "The result is withheld for the data owner: the run on the private data did not pass "
    "the site's checks before release (it did not match the request as approved, or a "
    "disclosure-control rule fired). Its privacy budget stays spent; the owner decides "
    "whether to release it."
)


def job_for(
    request: CodeRequest,
    assets: dict[str, Asset],
    settings: Settings,
    job_id: str,
    store: Storage,
) -> JobSpec:
    """The sandbox job that runs ``request`` on the real tables of its bound assets.

    A raw-data request runs under the recording harness, so its releases on the real
    table can be compared with its dry-run before anything is released (``_finish``).
    """
    kind = RequestKind(request.kind)
    return JobSpec(
        job_id=job_id,
        source=request.source,
        entry=request.entry,
        kind=kind,
        harness=RECORDING_HARNESS if kind is RequestKind.MECHANISM else DEFAULT_HARNESS,
        inputs={arg: str(store.path(assets[arg].real_path)) for arg in request.bindings},
        schemas={a: column_types(assets[a].columns) for a in request.bindings if assets[a].columns},
        epsilon=request.epsilon,
        delta=request.delta,
        context=ContextOptions(**request.context_options),
        limits=settings.run_limits(),
    )


class Runner:
    """Starts runs, records their outcome, and cleans up after a crash.

    It is given what it uses: ``sessions`` opens a database session, ``executor()``
    returns the sandbox executor (started on first use), ``watch`` hears of every state
    change, ``background`` runs the executor's callbacks off its threads, and ``store``
    holds the asset tables.
    """

    def __init__(
        self,
        sessions: Sessions,
        settings: Settings,
        executor: Callable[[], JobExecutor],
        watch: StateWatch,
        background: Executor,
        store: Storage,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.executor = executor
        self.watch = watch
        self.background = background
        self.store = store
        #: run id -> (monotonic start, the executor's future once it has one): claimed,
        #: launched runs whose outcome is not recorded yet.
        self._in_flight: dict[int, list] = {}
        self._flight = threading.Condition()
        self._closing = False
        self._deadline = 0.0
        self._cancelled: set[int] = set()

    def start(
        self,
        request_id: int,
        actor: User | None = None,
        address: str = "",
        run_args: dict[str, Any] | None = None,
    ) -> int:
        """Begin the next run of an approved request; returns the run id. ``run_args``:
        this run's checked public inputs (``datasite.contract.run_args``)."""
        with self.sessions() as db:
            run_id, spec = self.claim(db, request_id, actor, address, run_args)
            db.commit()
        self.watch.changed(request_id)
        self.launch(run_id, spec)
        return run_id

    def claim(
        self,
        db: Session,
        request_id: int,
        actor: User | None = None,
        address: str = "",
        run_args: dict[str, Any] | None = None,
    ) -> tuple[int, JobSpec]:
        """Count one run and mark the request ``running`` in the caller's transaction.

        The caller commits, then calls :meth:`launch`; approval does both in the same
        transaction as the budget reservation, so an approved request is never left
        without its run.
        """
        request = db.get(CodeRequest, request_id)
        if request is None:
            raise NotFound(f"There is no code request {request_id}.")
        now = utcnow()
        claimed = db.execute(_CLAIM, {"request_id": request_id, "now": now}).first()
        if claimed is None:
            if request.state not in RUNNABLE:
                raise TransitionError(f"This request is {request.state}; it cannot run.")
            raise TransitionError(
                f"This request has used all {request.runs_allowed} of its runs, "
                "or another run is in flight."
            )
        started = {"request_id": request_id, "started_at": now, **_NEW_RUN_DEFAULTS}
        run = RequestRun(id=db.execute(_NEW_RUN, started).inserted_primary_key[0], **started)
        # A request loaded for a view lists its new run and its new state.
        show_written(
            request,
            state=State.RUNNING.value,
            runs_used=claimed.runs_used,
            updated_at=now,
            runs=[*request.runs, run],
        )
        audit_log.record(
            db,
            "run_started",
            actor=actor,
            address=address,
            target_type="request",
            target_id=request_id,
            run=run.id,
            **({"run_args": run_args_digest(run_args)} if run_args is not None else {}),
        )
        assets = {arg: db.get(Asset, asset_id) for arg, asset_id in request.bindings.items()}
        spec = job_for(request, assets, self.settings, f"run-{run.id}", self.store)
        if run_args is not None:
            spec = spec.model_copy(update={"run_args": run_args})
        return run.id, spec

    def launch(self, run_id: int, spec: JobSpec) -> None:
        """Hand a claimed, committed run to the executor; its outcome is recorded later.

        A site that is stopping starts no run: it is recorded as cancelled, refunded.
        """
        with self._flight:
            closing = self._closing
            if not closing:
                self._in_flight[run_id] = [time.monotonic(), None]
        if closing:
            self._finish(run_id, _cancelled(spec.job_id, "the site was already stopping"))
            return
        try:
            future = self.executor().submit(spec)
        except Exception as exc:  # the executor could not even take the job
            log.exception("executor refused run %s", run_id)
            try:
                self._finish(
                    run_id,
                    JobResult(
                        job_id=spec.job_id,
                        ok=False,
                        error_type=type(exc).__name__,
                        error_message="The datasite could not start the run.",
                        error_detail=str(exc),
                    ),
                )
            finally:
                self._landed(run_id)
            return
        with self._flight:
            self._in_flight[run_id][1] = future
        future.add_done_callback(lambda f: self._done(run_id, f))

    def _done(self, run_id: int, future: Future[JobResult]) -> None:
        """The executor's callback: record the outcome off the executor's thread, or on
        it when the background pool has already shut down (a result is never dropped)."""
        try:
            self.background.submit(self._collect, run_id, future)
        except RuntimeError:  # "cannot schedule new futures after shutdown"
            self._collect(run_id, future)

    def _collect(self, run_id: int, future: Future[JobResult]) -> None:
        try:
            try:
                result = future.result()
            except CancelledError:  # dropped from the executor's queue: it never started
                result = _cancelled(f"run-{run_id}", "cancelled before it started")
            except Exception as exc:
                log.exception("run %s failed in the executor", run_id)
                result = JobResult(
                    job_id=f"run-{run_id}",
                    ok=False,
                    error_type=type(exc).__name__,
                    error_message="The sandbox failed before the run finished.",
                    error_detail=repr(exc),
                    touched_data=True,
                )
            if run_id in self._cancelled and not result.ok and result.error_type != "Cancelled":
                detail = f"error type: {result.error_type}\n{result.error_detail or ''}"
                result = result.model_copy(
                    update={"error_type": "Cancelled", "error_detail": detail}
                )
            self._finish(run_id, result)
        finally:
            self._landed(run_id)

    def _landed(self, run_id: int) -> None:
        with self._flight:
            self._in_flight.pop(run_id, None)
            self._flight.notify_all()

    def begin_shutdown(self, grace_seconds: float) -> None:
        """The site is stopping: start no more runs, and say on the console which runs
        are in flight and how long they may still take (``shutdown`` waits that long)."""
        with self._flight:
            if self._closing:
                return
            self._closing = True
            self._deadline = time.monotonic() + grace_seconds
            flying = {run_id: entry[0] for run_id, entry in self._in_flight.items()}
        if not flying:
            log.info("stopping: no runs in flight")
            return
        log.warning(
            "stopping: waiting up to %g s for %d run(s) in flight to finish: %s; any "
            "still running then is cancelled (Ctrl-C again cancels them now)",
            grace_seconds,
            len(flying),
            self._describe(flying),
        )

    def shutdown(self, grace_seconds: float) -> None:
        """Finish or cancel every run in flight, and record each outcome, before the
        site's background pool and executor close.

        Runs get until ``grace_seconds`` after :meth:`begin_shutdown`; those still
        running are cancelled through the executor (a data-blind run's releaser still
        reports what it released), killed after ``CANCEL_SECONDS`` if they do not
        answer, and recorded as failed ``Cancelled`` whatever happens (refunds:
        ``_refund_unused``). A result that arrives in time is recorded as usual.
        """
        self.begin_shutdown(grace_seconds)
        if self._wait_landed(lambda: self._deadline):
            return
        with self._flight:
            left = {run_id: entry for run_id, entry in self._in_flight.items()}
            self._cancelled |= set(left)
        log.warning(
            "stopping: cancelling %d run(s) still in flight after %g s: %s",
            len(left),
            grace_seconds,
            self._describe({run_id: entry[0] for run_id, entry in left.items()}),
        )
        for force in (False, True):
            cancel = getattr(self.executor(), "cancel", None)
            for _, future in left.values():
                if future is not None and cancel is not None:
                    cancel(future, force=force)
            until = time.monotonic() + CANCEL_SECONDS
            if self._wait_landed(lambda: until):  # noqa: B023 - called in this iteration
                return
        with self._flight:
            stuck = list(self._in_flight)
        for run_id in stuck:  # the executor never answered: record it ourselves
            log.error("stopping: run %s did not answer its cancel; recorded as cancelled", run_id)
            result = _cancelled(f"run-{run_id}", "its worker did not answer the cancel")
            self._finish(run_id, result.model_copy(update={"touched_data": True}))
            self._landed(run_id)

    def hurry(self) -> None:
        """Stop waiting for the runs in flight: cancel them now (a second Ctrl-C).

        Safe in a signal handler: it only moves the deadline the wait reads."""
        self._deadline = 0.0

    def _wait_landed(self, deadline: Callable[[], float]) -> bool:
        """Wait until no run is in flight (True) or ``deadline()`` passes (False)."""
        with self._flight:
            while self._in_flight:
                left = deadline() - time.monotonic()
                if left <= 0:
                    return False
                self._flight.wait(min(left, 0.5))
            return True

    def _describe(self, flying: dict[int, float]) -> str:
        """``request 3 run 4 (running for 12 s)``, for each run in ``flying``."""
        try:
            with self.sessions() as db:
                owners = dict(
                    db.execute(
                        select(RequestRun.id, RequestRun.request_id).where(
                            RequestRun.id.in_(list(flying))
                        )
                    ).all()
                )
                db.rollback()
        except Exception:  # the console line must not stop the shutdown
            owners = {}
        now = time.monotonic()
        return ", ".join(
            f"request {owners.get(run_id, '?')} run {run_id} (running for {now - began:.0f} s)"
            for run_id, began in sorted(flying.items())
        )

    def _stored_bytes(self, run_id: int) -> tuple[int, int]:
        """What the other runs of ``run_id``'s request keep (blobs and manifests), and
        the cap on all of them together."""
        with self.sessions() as db:
            request_id = db.scalar(select(RequestRun.request_id).where(RequestRun.id == run_id))
            others = db.execute(
                select(RequestRun.id, RequestRun.manifest).where(
                    RequestRun.request_id == request_id, RequestRun.id != run_id
                )
            ).all()
            db.rollback()
        used = 0
        for other_id, manifest in others:
            used += len(json.dumps(manifest)) if manifest else 0
            folder = self.settings.results_dir / str(other_id)
            if folder.is_dir():
                used += sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
        return used, self.settings.max_request_output_bytes

    def _within_request_cap(self, run_id: int, result: JobResult) -> JobResult:
        """``result``, or an ``OutputTooLarge`` failure (charge kept) when keeping it
        would take the request's stored output over its cap."""
        if not result.ok:
            return result
        used, cap = self._stored_bytes(run_id)
        size = len(json.dumps(result.manifest)) + sum(len(b) for b in result.blobs.values())
        if used + size <= cap:
            return result
        return result.model_copy(
            update={
                "ok": False,
                "manifest": None,
                "blobs": {},
                "error_type": "OutputTooLarge",
                "error_message": (
                    f"This request's outputs together would exceed the {cap}-byte limit "
                    "for one request; this run's output was not kept."
                ),
                "error_detail": f"stored by earlier runs: {used} bytes; this run: {size}",
                "touched_data": True,
            }
        )

    def _finish(self, run_id: int, result: JobResult) -> None:
        folder = self.settings.results_dir / str(run_id)
        result = self._within_request_cap(run_id, result)
        shown = shown_error_type(result.error_type)
        if shown != result.error_type:  # the researcher sees a fixed name, the owner all
            detail = f"error type: {result.error_type}\n{result.error_detail or ''}"
            result = result.model_copy(update={"error_type": shown, "error_detail": detail})
        # Non-DP tables and models of a raw-data run: SDC rules, membership attack.
        result, held, disclosure = review_outputs(self.sessions, self.store, run_id, result)
        if result.ok:
            folder.mkdir(parents=True, exist_ok=True)
            for name, data in result.blobs.items():
                (folder / Path(name).name).write_bytes(data)
        with self.sessions() as db:
            run = db.get(RequestRun, run_id)
            if run.state != "running":  # recorded already (a cancel that answered late)
                db.rollback()
                return
            request = run.request
            reasons = withheld_because(request, result) + held
            outcome = "withheld" if reasons else "released" if result.ok else "failed"
            run.state = outcome
            run.finished_at = utcnow()
            run.touched_data = result.touched_data
            run.manifest = _with_error_bars(request.kind, result) if result.ok else None
            run.error_type, run.error_message = result.error_type, result.error_message
            run.error_detail = result.error_detail
            if reasons:
                run.error_type, run.error_message = "Withheld", WITHHELD
                run.error_detail = "Withheld because " + "; ".join(reasons) + "."
            if disclosure:  # which rule fired on which cell, attack numbers: the owner's
                head = "Disclosure control:\n" + "\n".join(disclosure)
                run.error_detail = "\n\n".join(filter(None, [run.error_detail, head]))
            if result.error_type == "Cancelled":
                run.error_message = CANCELLED + (
                    CANCELLED_KEPT if result.touched_data else CANCELLED_REFUNDED
                )
            run.stdout, run.stderr = result.stdout, result.stderr
            run.duration_seconds = result.duration_seconds
            request.state = {"withheld": State.WITHHELD, "released": State.RELEASED}.get(
                outcome, State.FAILED
            ).value
            request.updated_at = utcnow()
            event_id = audit_log.record(
                db,
                f"run_{outcome}",
                actor=None,
                target_type="request",
                target_id=request.id,
                run=run_id,
                error_type=result.error_type,
                touched_data=result.touched_data,
            )
            if not result.ok:
                self._refund_unused(db, request, event_id, ran=result.touched_data)
            db.commit()
            request_id = request.id
        if self._closing:
            budget = "kept" if result.touched_data else "refunded"
            why = f" ({result.error_type}; budget {budget})" if outcome == "failed" else ""
            log.warning(
                "stopping: request %s run %s recorded: %s%s", request_id, run_id, outcome, why
            )
        self.watch.changed(request_id)

    def decide_withheld(
        self, request_id: int, run_id: int, owner: User, address: str, release: bool
    ) -> None:
        """The owner releases a withheld result, or discards it (the charge stays)."""
        with self.sessions() as db:
            run = db.get(RequestRun, run_id)
            if run is None or run.request_id != request_id:
                raise NotFound(f"Request {request_id} has no run {run_id}.")
            if run.state != "withheld":
                raise TransitionError(f"Run {run_id} is {run.state}, not withheld.")
            request = run.request
            target = State.RELEASED if release else State.FAILED
            check_transition(request.state, target)
            run.state = "released" if release else "failed"
            if release:
                run.error_type = run.error_message = None
            request.state, request.updated_at = target.value, utcnow()
            audit_log.record(
                db,
                "withheld_result_released" if release else "withheld_result_discarded",
                actor=owner,
                address=address,
                target_type="request",
                target_id=request_id,
                run=run_id,
            )
            db.commit()
        self.watch.changed(request_id)

    @staticmethod
    def _refund_unused(db: Session, request: CodeRequest, event_id: int, ran: bool) -> None:
        """A failed request runs no more: refund the runs it will never make.

        The failed run itself is refunded only when no researcher code ran with the
        private data in reach (``touched_data`` is set as soon as the researcher's module
        starts with the inputs open, see ``datasite.execution.outcome``): a compile error
        or a sandbox that could not start. Anything later keeps its charge.
        """
        unused = request.runs_allowed - request.runs_used + (0 if ran else 1)
        if unused > 0:
            ledger.refund(db, request, event_id, runs=unused)

    def close(self, request_id: int, actor: User | None = None, address: str = "") -> int:
        """End a request approved for several runs before it has used them all (a federated
        plan that stopped, an analysis that is done): no run starts any more, and the runs
        it will never make are refunded, once. Returns how many were refunded.

        Only a ``released`` request with runs left can be closed; the update is conditional
        on the counts just read, so a run that starts at the same moment wins and the
        close is refused (try again once that run has finished).
        """
        with self.sessions() as db:
            request = db.get(CodeRequest, request_id)
            if request is None:
                raise NotFound(f"There is no code request {request_id}.")
            used, allowed = request.runs_used, request.runs_allowed
            if request.state != State.RELEASED.value or used >= allowed:
                left = max(allowed - used, 0)
                raise TransitionError(
                    f"This request is {request.state} with {left} run(s) left: there is "
                    "nothing to close."
                )
            closed = db.execute(
                update(CodeRequest.__table__)
                .where(
                    _REQUESTS.id == request_id,
                    _REQUESTS.state == State.RELEASED.value,
                    _REQUESTS.runs_used == used,
                    _REQUESTS.runs_allowed == allowed,
                )
                .values(runs_allowed=used, updated_at=utcnow())
            ).rowcount
            if closed != 1:
                db.rollback()
                raise TransitionError("A run started meanwhile; close it once that run is done.")
            event_id = audit_log.record(
                db, "request_closed", actor=actor, address=address, target_type="request",
                target_id=request_id, refunded_runs=allowed - used,
            )  # fmt: skip
            ledger.refund(db, request, event_id, runs=allowed - used)
            db.commit()
        self.watch.changed(request_id)
        return allowed - used

    def fail_interrupted_runs(self) -> None:
        """After a restart, no run can still be in flight: mark them failed, keep the charge.

        Nothing says how far such a run got (the process that knew was killed), so it
        counts as having read the data: its own run stays charged, the runs the request
        will never make are refunded, once (the run is no longer ``running`` after this).
        Its duration is unknown (``None``), not the zero it started with.
        """
        with self.sessions() as db:
            for run in db.scalars(select(RequestRun).where(RequestRun.state == "running")):
                log.warning(
                    "request %s run %s was in flight when the datasite stopped (started %s); "
                    "marked failed (Interrupted), its budget stays spent",
                    run.request_id,
                    run.id,
                    run.started_at,
                )
                run.state, run.finished_at = "failed", utcnow()
                run.error_type, run.error_message = "Interrupted", INTERRUPTED
                run.duration_seconds = None
                run.touched_data = True  # we cannot know it did not: keep the charge
                request = run.request
                request.state = State.FAILED.value
                event_id = audit_log.record(
                    db,
                    "run_failed",
                    actor=None,
                    target_type="request",
                    target_id=request.id,
                    run=run.id,
                    error_type="Interrupted",
                )
                self._refund_unused(db, request, event_id, ran=True)
            db.commit()

    def blob_path(self, run: RequestRun, name: str) -> Path:
        names = _blob_names(run.manifest or {})
        if name not in names:
            raise NotFound(f"Run {run.id} has no output blob {name!r}.")
        return self.settings.results_dir / str(run.id) / name


def _with_error_bars(kind: str, result: JobResult) -> dict[str, Any] | None:
    """A data-blind run's manifest with the error bars of the values it returned as the
    releaser released them (``datasite.error_bars``); only the releaser's ledger counts,
    so a raw-data run (whose spend its own code records) gets none. Never loses a result.
    """
    if not result.manifest or not RequestKind(kind).data_blind:
        return result.manifest
    from datasite.error_bars import with_error_bars

    try:
        return with_error_bars(result.manifest, result.blobs, result.spend)
    except Exception:  # noqa: BLE001 - a picture is not worth a result
        log.warning("error bars for job %s could not be computed", result.job_id, exc_info=True)
        return result.manifest


def _cancelled(job_id: str, why: str) -> JobResult:
    """A run stopped before it started in the sandbox: nothing was read, all refunded."""
    return JobResult(
        job_id=job_id,
        ok=False,
        error_type="Cancelled",
        error_message=CANCELLED,
        error_detail=why,
        touched_data=False,
    )


def withheld_because(request: CodeRequest, result: JobResult) -> list[str]:
    """Why a finished run's result must wait for the owner (raw-data requests only)."""
    if not result.ok or request.kind != RequestKind.MECHANISM.value:
        return []
    from policies.enforcement import withhold_reasons

    return withhold_reasons(
        request.epsilon, request.delta, request.policy_report, result.harness_report or {}
    )


def _blob_names(node: object) -> set[str]:
    """Every blob name a result manifest refers to (key ``blob`` at any depth)."""
    found: set[str] = set()
    if isinstance(node, dict):
        if isinstance(node.get("blob"), str):
            found.add(node["blob"])
        for value in node.values():
            found |= _blob_names(value)
    elif isinstance(node, list):
        for value in node:
            found |= _blob_names(value)
    return found
