"""Code requests: submit, read, decide, run, fetch results.

A researcher sees only their own requests and never stdout, stderr or tracebacks of runs
on private data unless the owner released them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from sqlalchemy import Row
from sqlalchemy.orm import Session

from datasite import audit_log
from datasite.accounts import STAFF
from datasite.api.deps import (
    Caller,
    Id,
    caller,
    client_address,
    current_user,
    db_session,
    require,
    site,
    staff,
)
from datasite.contract.lifecycle import State
from datasite.contract.run_args import RunArgsIn, check_run_args
from datasite.contract.schemas import (
    ApproveIn,
    CodeRequestIn,
    CodeRequestOut,
    DenyIn,
    ResultOut,
    RunOut,
    WithheldDecisionIn,
)
from datasite.datasets import find_dataset, refuse_if_archived
from datasite.db.models import REQUEST_VIEW, CodeRequest, RequestRun, User
from datasite.db.statements import LATEST_RESULT, request_listing
from datasite.errors import Invalid, NotFound
from datasite.site import Site

router = APIRouter(prefix="/requests", tags=["requests"])


def run_out(run: RequestRun | Row[Any], viewer: User) -> RunOut:
    """A run as ``viewer`` may see it (a model, or a row of ``LATEST_RESULT``)."""
    # What a private run printed or raised may hold real rows: the owner's, not a reviewer's.
    private_ok = viewer.role == "owner" or run.detail_released
    staff_view = viewer.role in STAFF  # how long a run took is a channel: staff only
    return RunOut(
        id=run.id,
        state=run.state,
        started_at=run.started_at,
        finished_at=run.finished_at if staff_view else None,
        error_type=run.error_type,
        error_message=run.error_message,
        error_detail=run.error_detail if private_ok else None,
        stdout=run.stdout if private_ok else None,
        stderr=run.stderr if private_ok else None,
        # A withheld result is the owner's to look at until the owner releases it.
        manifest=run.manifest if staff_view or run.state != "withheld" else None,
        duration_seconds=run.duration_seconds if staff_view else None,
    )


def _updated_at(request: CodeRequest, viewer: User) -> datetime:
    """When a run ends is a channel too: a researcher sees the last run's start instead."""
    if viewer.role in STAFF or not request.runs:
        return request.updated_at
    return max(run.started_at for run in request.runs)


def request_out(request: CodeRequest, viewer: User) -> CodeRequestOut:
    names = {a.id: a.name for a in request.dataset.assets}
    return CodeRequestOut(
        id=request.id,
        project=request.project.name,
        dataset=request.dataset.name,
        author=request.author.email,
        entry=request.entry,
        source=request.source,
        source_hash=request.source_hash,
        kind=request.kind,
        bindings={arg: names[a] for arg, a in request.bindings.items()},
        epsilon=request.epsilon,
        delta=request.delta,
        mechanisms=request.mechanisms,
        context=request.context_options,
        description=request.description,
        runs_allowed=request.runs_allowed,
        runs_used=request.runs_used,
        state=request.state,
        deny_reason=request.deny_reason,
        override_justification=request.override_justification,
        policy_report=request.policy_report,
        policy_version=request.policy_version,
        created_at=request.created_at,
        updated_at=_updated_at(request, viewer),
        runs=[run_out(r, viewer) for r in request.runs],
    )


def _hidden(author_id: int, user: User) -> bool:
    """A researcher sees only their own requests; staff see all."""
    return user.role == "researcher" and author_id != user.id


def _not_found(request_id: int) -> NotFound:
    return NotFound(f"There is no code request {request_id} you can see.")


def visible_request(db: Session, request_id: int, user: User) -> CodeRequest:
    request = db.get(CodeRequest, request_id, options=REQUEST_VIEW)
    if request is None or _hidden(request.author_id, user):
        raise _not_found(request_id)
    return request


@router.post("", response_model=CodeRequestOut, status_code=201)
def submit(
    body: CodeRequestIn,
    request: Request,
    user: User = Depends(require("researcher")),
    db: Session = Depends(db_session),
    the_site: Site = Depends(site),
) -> CodeRequestOut:
    try:
        dataset = find_dataset(db, body.dataset)
    except NotFound:  # named again from what this researcher may see (no archived names)
        dataset = find_dataset(db, body.dataset, user)
    refuse_if_archived(dataset)  # 409, not 404: the researcher's earlier requests name it
    created = the_site.reviewer.submit(db, body, user, client_address(request))
    db.commit()
    the_site.reviewer.schedule_check(created.id)
    return request_out(created, user)


@router.get("", response_model=list[CodeRequestOut])
async def list_requests(
    state: str | None = Query(default=None, max_length=20),
    dataset: str | None = Query(default=None, max_length=200),
    who: Caller = Depends(caller),
) -> list[CodeRequestOut]:
    """Requests, oldest first: a researcher's own, or all for staff (a reviewer's queue is
    ``state=checked``)."""

    def read(db: Session, user: User) -> list[CodeRequestOut]:
        own = user.role == "researcher"
        query = request_listing(bool(state), bool(dataset), own)
        found = db.scalars(query, {"state": state, "dataset": dataset, "author": user.id})
        return [request_out(r, user) for r in found]

    return await who.run(read)


@router.get("/{request_id}", response_model=CodeRequestOut)
async def get_request(request_id: Id, who: Caller = Depends(caller)) -> CodeRequestOut:
    """One request as the caller may see it (every ``wait()`` and ``refresh()`` reads it)."""
    return await who.run(lambda db, user: request_out(visible_request(db, request_id, user), user))


@router.get("/{request_id}/next", response_model=CodeRequestOut)
async def next_state(
    request_id: Id,
    state: str = Query(max_length=20, description="the state the caller last saw"),
    timeout: float = Query(default=20.0, gt=0, le=60),
    user: User = Depends(current_user),
    the_site: Site = Depends(site),
) -> CodeRequestOut:
    """The request as soon as it is no longer in ``state``, or as it is after ``timeout``
    seconds: a long poll, so a waiting notebook hears of a change at once."""
    if state not in {s.value for s in State}:
        raise Invalid(f"Unknown state {state!r}; states are {', '.join(s.value for s in State)}.")

    def read() -> CodeRequestOut:
        with the_site.sessions() as db:
            return request_out(visible_request(db, request_id, user), user)

    deadline = time.monotonic() + timeout
    while True:
        ticket = the_site.watch.ticket(request_id)  # before reading: no change slips by
        current = await run_in_threadpool(read)
        remaining = deadline - time.monotonic()
        if current.state != state or remaining <= 0:
            the_site.watch.discard(ticket)
            return current
        await the_site.watch.wait(ticket, remaining)


@router.get("/{request_id}/result", response_model=ResultOut)
async def latest_result(request_id: Id, who: Caller = Depends(caller)) -> ResultOut:
    """The request's state and its latest run: all a notebook needs to fetch a result,
    in one small read instead of the whole request."""

    def read(db: Session, user: User) -> ResultOut:
        row = db.execute(LATEST_RESULT, {"request_id": request_id}).first()
        if row is None or _hidden(row.author_id, user):
            raise _not_found(request_id)
        return ResultOut(
            request_id=request_id,
            state=row.request_state,
            deny_reason=row.deny_reason,
            run=run_out(row, user) if row.id is not None else None,
        )

    return await who.run(read)


@router.post("/{request_id}/approve", response_model=CodeRequestOut)
async def approve(
    request_id: Id, body: ApproveIn, request: Request, who: Caller = Depends(caller)
) -> CodeRequestOut:
    """Approve: reserve the budget and claim the first run; answers with the request as
    the approval left it (``running``). The run starts once the answer is out: on a
    small machine, starting it first made the reviewer wait for the sandbox's fork."""
    address = client_address(request)
    started: list[Callable[[], None]] = []

    def decide(db: Session, user: User) -> CodeRequestOut:
        approved = who.site.reviewer.approve(
            request_id, user, body.justification, address, db, defer=started.append
        )
        return request_out(approved, user)

    try:
        return await who.run(decide, STAFF)
    finally:
        # On the event loop, after this call's answer is written (the loop runs it once
        # this task stops); also when building the answer failed after the commit.
        loop = asyncio.get_running_loop()
        for start in started:
            loop.call_soon(start)


@router.post("/{request_id}/deny", response_model=CodeRequestOut)
def deny(
    request_id: Id,
    body: DenyIn,
    request: Request,
    user: User = Depends(staff),
    the_site: Site = Depends(site),
    db: Session = Depends(db_session),
) -> CodeRequestOut:
    the_site.reviewer.deny(request_id, user, body.reason, client_address(request))
    return request_out(visible_request(db, request_id, user), user)


@router.post("/{request_id}/run", response_model=CodeRequestOut)
def run_again(
    request_id: Id,
    request: Request,
    body: RunArgsIn | None = None,
    user: User = Depends(require("researcher")),
    the_site: Site = Depends(site),
    db: Session = Depends(db_session),
) -> CodeRequestOut:
    """Start the next run of a request approved for several runs, optionally with this
    run's public inputs (``params`` JSON, ``weights`` safetensors as base64), which the
    function receives as ``run_args``."""
    visible_request(db, request_id, user)
    try:
        run_args = check_run_args(body) if body is not None else None
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    db.commit()  # release SQLite's write lock before the runner opens its own session
    the_site.runner.start(request_id, user, client_address(request), run_args=run_args)
    db.expire_all()
    return request_out(visible_request(db, request_id, user), user)


@router.post("/{request_id}/close", response_model=CodeRequestOut)
def close(
    request_id: Id,
    request: Request,
    user: User = Depends(require("researcher")),
    the_site: Site = Depends(site),
    db: Session = Depends(db_session),
) -> CodeRequestOut:
    """End a request approved for several runs before it has used them all: no more runs,
    and the unused ones are refunded (``Runner.close``)."""
    visible_request(db, request_id, user)
    db.commit()  # release SQLite's write lock before the runner opens its own session
    the_site.runner.close(request_id, user, client_address(request))
    db.expire_all()
    return request_out(visible_request(db, request_id, user), user)


@router.post("/{request_id}/runs/{run_id}/release-detail", response_model=RunOut)
def release_detail(
    request_id: Id,
    run_id: Id,
    request: Request,
    owner: User = Depends(require("owner")),
    db: Session = Depends(db_session),
) -> RunOut:
    """The owner lets the researcher see a run's stdout, stderr and traceback."""
    run = db.get(RequestRun, run_id)
    if run is None or run.request_id != request_id:
        raise NotFound(f"Request {request_id} has no run {run_id}.")
    run.detail_released = True
    audit_log.record(
        db,
        "run_detail_released",
        actor=owner,
        address=client_address(request),
        target_type="request",
        target_id=request_id,
        run=run_id,
    )
    db.commit()
    return run_out(run, owner)


@router.post("/{request_id}/runs/{run_id}/withheld", response_model=CodeRequestOut)
def decide_withheld(
    request_id: Id,
    run_id: Id,
    body: WithheldDecisionIn,
    request: Request,
    owner: User = Depends(require("owner")),
    db: Session = Depends(db_session),
    the_site: Site = Depends(site),
) -> CodeRequestOut:
    """The owner releases a result the site withheld (the run did not match its dry-run),
    or discards it: the request fails and its charge stays."""
    db.rollback()  # the runner writes in its own session
    the_site.runner.decide_withheld(
        request_id, run_id, owner, client_address(request), body.release
    )
    db.expire_all()
    return request_out(visible_request(db, request_id, owner), owner)


@router.get("/{request_id}/runs/{run_id}/blobs/{name}", response_class=FileResponse)
def get_blob(
    request_id: Id,
    run_id: Id,
    name: str,
    user: User = Depends(current_user),
    db: Session = Depends(db_session),
    the_site: Site = Depends(site),
) -> FileResponse:
    """One output file of a released run (Parquet table or skops model)."""
    visible_request(db, request_id, user)
    run = db.get(RequestRun, run_id)
    readable = ("released", "withheld") if user.role in STAFF else ("released",)
    if run is None or run.request_id != request_id or run.state not in readable:
        raise NotFound(f"Request {request_id} has no released run {run_id}.")
    path = the_site.runner.blob_path(run, name)
    return FileResponse(path, media_type="application/octet-stream")
