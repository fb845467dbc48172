"""The SQL statements the site builds once, at import, and ``show_written``.

Everywhere else a statement is built where it runs: plain and readable. A statement is
kept here for one of two reasons, given where it stands:

- speed on the paths ``bench/cycle.py`` measures (results in
  ``bench/results/cycle_comparison.md``: "approve (find + approve)" and "fetch, new
  handle"), where building a statement (and its cache key) costs more than running it
  and an ORM UPDATE or unit-of-work flush costs several times the statement (approval in
  plain table statements: 8.1 ms -> 5.5 ms). Each is built with ``bindparam`` slots and
  executed with the values.
- correctness: the compare-and-set UPDATEs. The database checks their WHERE on the row
  it locks, so of two concurrent decisions one finds nothing to update, and concurrent
  charges can never take a grant past its total, on SQLite and on PostgreSQL.

A plain table statement writes behind the ORM's back; ``show_written`` puts what it
wrote on the objects already loaded, so the answer built from them is true.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Select, bindparam, func, insert, or_, select, update
from sqlalchemy.orm import joinedload
from sqlalchemy.orm.attributes import set_committed_value

from datasite.contract.lifecycle import State
from datasite.db.models import (
    REQUEST_VIEW,
    Base,
    BudgetGrant,
    CodeRequest,
    Dataset,
    LedgerEntry,
    PolicySetting,
    RequestRun,
    SessionToken,
    User,
)


def show_written(instance: Base, **values: Any) -> None:
    """Show on a loaded object the values a plain table UPDATE or INSERT just wrote for it,
    as if read back: no query, and nothing for the session to flush again.

    The approval writes with plain statements (an ORM flush costs several times the
    statement) and answers with the request it loaded; this keeps that answer true.

    >>> run = RequestRun(state="running")
    >>> show_written(run, state="released", duration_seconds=0.25)
    >>> run.state, run.duration_seconds
    ('released', 0.25)
    """
    for key, value in values.items():
        set_committed_value(instance, key, value)


# -- authentication (``datasite.auth.tokens``) -------------------------------------------

#: Speed: every API call reads its caller's token (``bench/bench_http_floor.py``'s
#: ``/auth/me`` row, and every step of ``bench/cycle.py``); a plain join, not the token
#: entity loaded with its user.
USER_FOR_TOKEN = (
    select(User, SessionToken.expires_at, SessionToken.revoked)
    .join(SessionToken, SessionToken.user_id == User.id)
    .where(SessionToken.token_hash == bindparam("token_hash"))
)

# -- policies (``datasite.policy_store``) ---------------------------------------------------

#: Speed: the dataset's policy and one researcher's override in one query; approval
#: reads them inside its transaction (``bench/cycle.py``, "approve it").
POLICY_AND_OVERRIDE = select(PolicySetting.user_id, PolicySetting.document).where(
    PolicySetting.dataset_id == bindparam("dataset"),
    or_(PolicySetting.user_id.is_(None), PolicySetting.user_id == bindparam("user")),
)

# -- decisions (``datasite.review``) ------------------------------------------------------

#: Speed: the request to approve with everything its view reads, in one statement
#: (``bench/cycle.py``, "approve it"). Unlike ``REQUEST_VIEW`` it joins the runs too: a
#: request being decided has none yet, so the join adds no rows.
REQUEST_WITH_VIEW = (
    select(CodeRequest)
    .options(
        joinedload(CodeRequest.project),
        joinedload(CodeRequest.author),
        joinedload(CodeRequest.dataset).joinedload(Dataset.assets),
        joinedload(CodeRequest.runs),
    )
    .where(CodeRequest.id == bindparam("id"))
)
#: Correctness (compare-and-set): only a ``checked`` request can be decided, so of two
#: concurrent decisions one finds nothing to update. A plain table UPDATE for speed too.
DECIDE = update(CodeRequest.__table__).where(
    CodeRequest.__table__.c.id == bindparam("request_id"),
    CodeRequest.__table__.c.state == State.CHECKED.value,
)

# -- the ledger (``datasite.ledger``) -------------------------------------------------------

#: Float sums of declared epsilons (0.1 + 0.2) must not fail a grant they exactly fill.
SPEND_TOLERANCE = 1e-9
_GRANTS = BudgetGrant.__table__.c

#: Speed: the researcher's grant on the dataset, read by every approval and refund
#: (``bench/cycle.py``, "approve it").
GRANT = select(BudgetGrant).where(
    BudgetGrant.user_id == bindparam("user_id"), BudgetGrant.dataset_id == bindparam("dataset_id")
)
#: Speed: a refund's move of the spent totals, a plain table UPDATE (it cannot overdraw).
SPEND_UNCHECKED = (
    update(BudgetGrant.__table__)
    .where(_GRANTS.id == bindparam("grant_id"))
    .values(
        spent_epsilon=_GRANTS.spent_epsilon + bindparam("cost_epsilon"),
        spent_delta=_GRANTS.spent_delta + bindparam("cost_delta"),
    )
)
#: Correctness (compare-and-set): the spend that cannot overdraw, the database checks the
#: grant on the row it locks, so concurrent charges serialize on it.
SPEND = SPEND_UNCHECKED.where(
    _GRANTS.spent_epsilon + bindparam("cost_epsilon") <= _GRANTS.epsilon + SPEND_TOLERANCE,
    _GRANTS.spent_delta + bindparam("cost_delta") <= _GRANTS.delta + SPEND_TOLERANCE,
)
#: Speed: the ledger entry of a charge, a plain INSERT in the approval's transaction
#: (``bench/cycle.py``, "approve it").
LEDGER_ENTRY = insert(LedgerEntry.__table__)

# -- reading requests and results (``datasite.api.requests``) ---------------------------

#: The run columns ``datasite.api.requests.run_out`` reads, and ``LATEST_RESULT`` selects.
RUN_FIELDS = (
    "id",
    "state",
    "started_at",
    "finished_at",
    "error_type",
    "error_message",
    "error_detail",
    "stdout",
    "stderr",
    "manifest",
    "duration_seconds",
    "detail_released",
)

#: Speed: a request's state and its latest run's columns in one row; a notebook fetching
#: results calls this in a loop (``bench/cycle.py``, "fetch, new handle").
LATEST_RESULT = (
    select(
        CodeRequest.author_id,
        CodeRequest.state.label("request_state"),
        CodeRequest.deny_reason,
        *(RequestRun.__table__.c[name] for name in RUN_FIELDS),
    )
    .outerjoin(
        RequestRun,
        RequestRun.id
        == select(func.max(RequestRun.id))
        .where(RequestRun.request_id == bindparam("request_id"))
        .scalar_subquery(),
    )
    .where(CodeRequest.id == bindparam("request_id"))
)


@functools.cache
def request_listing(by_state: bool, by_dataset: bool, own: bool) -> Select[tuple[CodeRequest]]:
    """Speed: the listing's statement for one combination of filters, built once; a
    reviewer's queue is listed again and again (``bench/cycle.py``, "find the pending
    request"). Its values are ``state``, ``dataset`` (a name) and ``author`` (an id).

    >>> request_listing(True, False, True) is request_listing(True, False, True)
    True
    """
    query = select(CodeRequest).options(*REQUEST_VIEW).order_by(CodeRequest.id)
    if by_state:
        query = query.where(CodeRequest.state == bindparam("state"))
    if by_dataset:
        query = query.join(Dataset).where(Dataset.name == bindparam("dataset"))
    if own:
        query = query.where(CodeRequest.author_id == bindparam("author"))
    return query
