"""The researcher's session with a datasite: datasets, mocks, projects, requests, results.

>>> import researcher_kit as rk
>>> site = rk.login("http://127.0.0.1:8080", "bob@uni.example", "pw")  # doctest: +SKIP
>>> pings = site.datasets["Pings"].assets["pings"]  # doctest: +SKIP
>>> pings.mock.head()  # doctest: +SKIP
"""

from __future__ import annotations

import html
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING, Any

import pandas as pd

from datasite.client.http import (
    ApiSession,
    DatasiteError,
    in_notebook_without_widgets,
    progress_shown,
)
from datasite.client.records import Named, Record, RequestRecord, html_table

if TYPE_CHECKING:
    from researcher_kit.request import DPRequest

FINAL_STATES = ("released", "failed", "denied", "withheld")
#: How long one long poll may hang (well under the HTTP client's own timeout).
LONG_POLL_SECONDS = 20.0


class Asset:
    """One asset of a dataset: its schema and its mock table. The real table stays home."""

    def __init__(self, session: ApiSession, dataset: str, data: dict[str, Any]) -> None:
        self._session = session
        self.dataset = dataset
        self.data = data
        self.name: str = data["name"]

    @cached_property
    def mock(self) -> pd.DataFrame:
        """The mock table, fetched once as Parquet."""
        return self._session.get_table(f"/datasets/{self.dataset}/assets/{self.name}/mock")

    @property
    def columns(self) -> list[dict[str, str]]:
        return self.data["columns"]

    def __repr__(self) -> str:
        return f"<Asset {self.dataset}/{self.name}: {len(self.columns)} columns>"

    def _repr_html_(self) -> str:
        preview = self.mock.head(5).to_html(max_cols=20)
        return (
            f"<h4>Asset {html.escape(self.name)} of {html.escape(self.dataset)}</h4>"
            f"<p>{self.data['mock_rows']:,} mock rows · the real table's size is private"
            f" (private)</p>"
            + html_table(self.columns, ["name", "dtype"])
            + f"<p>Mock preview</p>{preview}"
        )


class Dataset(Record):
    def __init__(self, session: ApiSession, data: dict[str, Any]) -> None:
        self.data = data
        self.name: str = data["name"]
        self.assets = Named([Asset(session, self.name, a) for a in data["assets"]], "asset")

    def __repr__(self) -> str:
        return f"<Dataset {self.name}: {len(self.assets)} assets>"

    def _repr_html_(self) -> str:
        rows = [
            {"asset": a.name, "columns": len(a.columns), "mock rows": a.data["mock_rows"]}
            for a in self.assets
        ]
        return (
            f"<h4>{html.escape(self.name)}</h4><p>{html.escape(self.data['summary'])}</p>"
            f"<pre>{html.escape(self.data['description'])}</pre>"
            + html_table(rows, ["asset", "columns", "mock rows"])
        )


class Datasets:
    def __init__(self, session: ApiSession) -> None:
        self._session = session

    def __getitem__(self, key: int | str) -> Dataset:
        if isinstance(key, int):
            return self.list()[key]
        try:
            return Dataset(self._session, self._session.get(f"/datasets/{key}"))
        except DatasiteError as exc:
            raise KeyError(str(exc)) from None

    def list(self) -> list[Dataset]:
        return [Dataset(self._session, d) for d in self._session.get("/datasets")]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.list())

    def __len__(self) -> int:
        return len(self.list())

    def _repr_html_(self) -> str:
        rows = [
            {"dataset": d.name, "summary": d.data["summary"], "assets": len(d.assets)}
            for d in self.list()
        ]
        return html_table(rows, ["dataset", "summary", "assets"])


class Request(RequestRecord):
    """A submitted request, as its author sees it."""

    def wait(self, timeout: float = 600.0, until: tuple[str, ...] = FINAL_STATES) -> Request:
        """Wait until the request reaches one of ``until`` (by default: a final state).

        Each round trip is a long poll (``/requests/{id}/next``): the site answers the
        moment the state changes, so no time is lost between polls.
        """
        deadline = time.monotonic() + timeout
        if self.data.get("state") in (None, *until):
            self.refresh()  # it may be there already: read it now
        # Otherwise the first long poll is the read: it answers at once if the state
        # this handle knows is out of date.
        if self.state in until:
            return self
        with progress_line(f"Request {self.id}: {self.state}") as show:
            while self.state not in until:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"Request {self.id} is still {self.state} after {timeout:g}s."
                    )
                self.data = self._session.get(
                    f"/requests/{self.id}/next",
                    params={"state": self.state, "timeout": min(remaining, LONG_POLL_SECONDS)},
                )
                show(f"Request {self.id}: {self.state}")
        return self

    def result(self, timeout: float = 600.0) -> Any:
        """The outputs of the latest run on the private data, waiting for it if needed.

        A request that is over (released with no runs left, failed or denied) cannot
        change, so what this handle holds is final: after :meth:`wait`, whose last answer
        carried the run, the outputs come without asking the site again. Otherwise one
        small round trip (``/requests/{id}/result``: the state and the latest run) reads
        them, and an unfinished run is waited for first. Approved requests move on by
        themselves; a ``checked`` one waits for a person, so that raises at once.
        """
        deadline = time.monotonic() + timeout
        ready = FINAL_STATES + ("checked",)
        while (latest := self._latest())["state"] not in ready:
            self.wait(max(deadline - time.monotonic(), 0.0), until=ready)
        if latest["state"] == "checked":
            raise PermissionError(self._waiting_message())
        if latest["state"] == "denied":
            raise PermissionError(f"Request {self.id} was denied: {latest['deny_reason']}")
        run = latest["run"]
        if run["state"] == "withheld":
            raise PermissionError(f"Request {self.id}: {run['error_message']}")
        if run["state"] == "failed":
            raise RuntimeError(f"The run failed: {run['error_type']}: {run['error_message']}")
        return fetch_result(self._session, self.id, run)

    def _waiting_message(self) -> str:
        """Why a checked request has no result yet, and who can move it on."""
        report = self.data.get("policy_report")
        if not report:
            report = self.refresh().data.get("policy_report") or {}
        if report.get("verdict") == "blocked":
            blocking = [
                f["message"] for f in report.get("findings") or [] if f["severity"] == "blocking"
            ]
            why = f" ({blocking[0]})" if blocking else ""
            return (
                f"Request {self.id} is blocked by the policy checker{why}. Only the data owner "
                "can approve a blocked request, with a written justification that goes into "
                "the audit log; a reviewer cannot. Fix the code and submit it again, or ask "
                "the owner."
            )
        return f"Request {self.id} is waiting for a reviewer's decision; try again later."

    def _latest(self) -> dict[str, Any]:
        """The state, deny reason and latest run: from this handle when the request is
        over, else from the site."""
        data = self.data
        state = data.get("state")
        over = state in ("failed", "denied", "withheld") or (
            state == "released" and data.get("runs_used") == data.get("runs_allowed")
        )
        if not over:
            return self._session.get(f"/requests/{self.id}/result")
        runs = data.get("runs") or [None]
        return {"state": state, "deny_reason": data.get("deny_reason"), "run": runs[-1]}

    def close(self) -> Request:
        """End a request approved for several runs before it has used them all: no more
        runs, and the budget of the unused ones comes back to you."""
        self.data = self._session.post(f"/requests/{self.id}/close")
        return self

    def run(self, params: dict[str, Any] | None = None, weights: bytes | None = None) -> Request:
        """Start the next run of a request approved for several runs.

        ``params`` (plain JSON) and ``weights`` (a safetensors blob) are this run's public
        inputs; the function receives them as ``run_args`` (``datasite.contract.run_args``).
        """
        if params is None and weights is None:
            self.data = self._session.post(f"/requests/{self.id}/run")
            return self
        import base64

        body = {
            "params": params or {},
            "weights": base64.b64encode(weights).decode() if weights is not None else None,
        }
        self.data = self._session.post(f"/requests/{self.id}/run", json=body)
        return self


def fetch_result(session: ApiSession, request_id: int, run: dict[str, Any]) -> Any:
    """Download a released run's blobs and turn the manifest back into Python values."""
    from datasite.contract.results import blob_names, decode_result

    manifest = run["manifest"]
    blobs = {
        name: session.get(f"/requests/{request_id}/runs/{run['id']}/blobs/{name}")
        for name in blob_names(manifest)
    }
    return decode_result(manifest, blobs)


def for_people(value: float) -> str:
    """A privacy budget as people read it: at most three decimals, at least one.

    >>> for_people(1.0999999999999999), for_people(2), for_people(0.25), for_people(0.0001)
    ('1.1', '2.0', '0.25', '0.0001')
    """
    if 0 < abs(value) < 0.001:
        return f"{value:.1g}"
    text = f"{round(value, 3):.3f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


class Listing(list):  # type: ignore[type-arg]
    """A list the site returned, readable as ``site.requests`` or ``site.requests()``: both
    mean the same, so old notebooks keep working whichever style they used."""

    def __call__(self) -> Listing:
        return self


class Budget(dict):  # type: ignore[type-arg]
    """One budget grant as the site returned it (a dict), printed for people.

    >>> Budget(email="b@x", dataset="Pings", epsilon=3.0, spent_epsilon=1.9000000000000001,
    ...        remaining_epsilon=1.0999999999999999, delta=0.0, remaining_delta=0.0)
    <Budget Pings: epsilon 1.1 of 3.0 left (1.9 spent)>
    """

    def __repr__(self) -> str:
        text = (
            f"{self['dataset']}: epsilon {for_people(self['remaining_epsilon'])} of "
            f"{for_people(self['epsilon'])} left ({for_people(self['spent_epsilon'])} spent"
        )
        if self.get("delta"):
            text += f"; delta {self['remaining_delta']:.2g} of {self['delta']:.2g} left"
        return f"<Budget {text})>"


class Site:
    """A researcher's logged-in session.

    ``requests``, ``budgets`` and ``projects`` are lists fetched on each read; calling
    them (``site.budgets()``) gives the same list.
    """

    def __init__(self, session: ApiSession) -> None:
        self.session = session
        self.datasets = Datasets(session)

    @property
    def email(self) -> str:
        return self.session.user.get("email", "")

    def __repr__(self) -> str:
        try:
            count = f"{len(self.session.get('/datasets'))} datasets"
        except DatasiteError:
            count = "datasets unknown (site unreachable)"
        role = self.session.user.get("role", "")
        who = f"{self.email} ({role})" if role else self.email
        return f"<Site {self.session.url} as {who}: {count}>"

    def create_project(self, name: str, description: str = "") -> dict[str, Any]:
        return self.session.post("/projects", json={"name": name, "description": description})

    @property
    def projects(self) -> Listing:
        """Your projects (``site.projects`` or ``site.projects()``)."""
        return Listing(self.session.get("/projects"))

    def submit(
        self, request: DPRequest, project: str, description: str = "", create_project: bool = True
    ) -> Request:
        """Submit a request into ``project`` (created on first use)."""
        if create_project and project not in {p["name"] for p in self.projects()}:
            self.create_project(project)
        body = request.payload(project=project, description=description)
        return Request(self.session, self.session.post("/requests", json=body))

    def precheck(self, request: DPRequest) -> Any:
        """The site's policy report for ``request``, from a dry-run on the mock."""
        from datasite.client.records import report_object

        return report_object(self.session.post("/precheck", json=request.payload(project="-")))

    @property
    def requests(self) -> Listing:
        """Your requests (``site.requests`` or ``site.requests()``)."""
        return Listing(Request(self.session, d) for d in self.session.get("/requests"))

    def request(self, request_id: int) -> Request:
        return Request(self.session, self.session.get(f"/requests/{request_id}"))

    @property
    def budgets(self) -> Listing:
        """What you may still spend, per dataset (``site.budgets`` or ``site.budgets()``)."""
        return Listing(Budget(b) for b in self.session.get("/budgets"))


@contextmanager
def progress_line(first: str) -> Iterator[Callable[[str], None]]:
    """Show a waiting job's state: a rich spinner in a terminal (or a notebook with
    ipywidgets), else one plain text line per change of state; nothing when
    ``DATASITE_NO_PROGRESS`` is set. Yields the function that reports a new state."""
    if not progress_shown():
        yield lambda text: None
        return
    start = time.monotonic()
    if in_notebook_without_widgets():
        last = [first]
        print(f"{first} ...", file=sys.stdout, flush=True)

        def plain(text: str) -> None:
            if text != last[0]:
                last[0] = text
                print(f"{text} ({time.monotonic() - start:.0f} s)", file=sys.stdout, flush=True)

        yield plain
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, transient=True) as shown:
        task = shown.add_task(first)
        yield lambda text: shown.update(task, description=text)


def login(url: str, email: str, password: str) -> Site:
    """Log in to a datasite as a researcher."""
    return Site(ApiSession.login(url, email, password))
