"""``sy.login``: one login, and the client that fits the account's role.

Owners and reviewers get an ``OwnerClient`` (upload datasets, create users, decide on
requests); researchers get a ``ResearcherClient`` (datasets, projects, code, results).
Both wrap the foundation clients (``datasite.client.admin``, ``researcher_kit.client``) over one
``ApiSession``; anything not wrapped here is reached through them
(``owner.budgets.grant(...)``, ``client.budgets()``).

>>> owner = login(url="localhost", port=8080, email="info@openmined.org",
...               password="changethis")  # doctest: +SKIP
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import urlsplit

import researcher_kit.client as rkc
from datasite.client import admin
from datasite.client.http import ApiSession, DatasiteError
from datasite.contract.lifecycle import PENDING
from researcher_kit.syft_compat.builders import Dataset
from researcher_kit.syft_compat.code import CodeNamespace
from researcher_kit.syft_compat.projects import Project
from researcher_kit.syft_compat.views import (
    DatasetList,
    OwnerRequest,
    RequestList,
    UserView,
    delegate,
)

ROLE_NAMES = {
    "data_scientist": "researcher",
    "ds": "researcher",
    "data_owner": "owner",
    "admin": "owner",
}


class _Client:
    """What both kinds of client share: the session, who is logged in, the datasets."""

    def __init__(self, session: ApiSession) -> None:
        self.session = session
        self.datasets = DatasetList(rkc.Datasets(session), self.role)

    @property
    def url(self) -> str:
        return self.session.url

    @property
    def email(self) -> str:
        return self.session.user.get("email", "")

    @property
    def role(self) -> str:
        return self.session.user.get("role", "")

    def logout(self) -> None:
        self.session.post("/auth/logout")
        self.session.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.email} ({self.role}) at {self.url}>"

    def _header(self) -> str:
        return (
            f"<h4>Datasite {html.escape(self.url)}</h4><p>Logged in as "
            f"{html.escape(self.email)} ({html.escape(self.role)})</p>"
        )


class Users:
    """``owner.users``: create and list accounts."""

    def __init__(self, inner: admin.Users) -> None:
        self.inner = inner

    def create(
        self,
        email: str,
        name: str,
        password: str | None = None,
        password_verify: str | None = None,
        institution: str = "",
        website: str = "",
        role: str = "researcher",
    ) -> UserView:
        """Create an account (a researcher unless ``role`` says otherwise)."""
        if password_verify is not None and password != password_verify:
            raise ValueError("password and password_verify do not match; nothing was created.")
        role = ROLE_NAMES.get(str(role).lower().rsplit(".", 1)[-1], str(role).lower())
        record = self.inner.create(
            email=email,
            name=name,
            role=role,
            password=password,
            institution=institution,
            website=website,
        )
        return UserView.from_record(record)

    def get_all(self) -> list[UserView]:
        return [UserView.from_record(u) for u in self.inner.list()]

    def __getattr__(self, name: str) -> Any:
        return delegate(self, "inner", name)


class OwnerClient(_Client):
    """An owner's or reviewer's client: upload, accounts, and decisions on requests."""

    def __init__(self, session: ApiSession) -> None:
        super().__init__(session)
        self.admin = admin.OwnerClient(session)
        self.users = Users(self.admin.users)

    def upload_dataset(self, dataset: Dataset, progress: bool = True) -> dict[str, Any]:
        """Upload ``dataset`` (real and mock tables of every asset) to the site."""
        if not dataset.asset_list:
            raise ValueError(f"Dataset {dataset.name!r} has no assets; use add_asset first.")
        return self.admin.datasets.upload(
            name=dataset.name,
            assets={a.name: (a.data, a.mock) for a in dataset.asset_list},
            description=dataset.description,
            summary=dataset.summary,
            citation=dataset.citation,
            contributors=dataset.contributors,
            asset_descriptions={a.name: a.description for a in dataset.asset_list},
            progress=progress,
        )

    @property
    def requests(self) -> RequestList:
        """Every code request on the site: those waiting for a decision first, newest
        first, then the decided ones, oldest first.

        So ``requests[0]`` is what was just submitted: a notebook re-run against a saved
        site (launched without ``reset=True``) approves the request it made, never one an
        earlier run left waiting.
        """
        every = [OwnerRequest(self.session, r.data) for r in self.admin.requests.all()]
        waiting = [r for r in every if r.state in {s.value for s in PENDING}]
        decided = [r for r in every if r not in waiting]
        return RequestList(sorted(waiting, key=lambda r: -r.id) + decided)

    def __getattr__(self, name: str) -> Any:
        return delegate(self, "admin", name)

    def _repr_html_(self) -> str:
        return self._header() + self.datasets._repr_html_()


class ResearcherClient(_Client):
    """A researcher's client: datasets and mocks, projects, requests, results."""

    def __init__(self, session: ApiSession) -> None:
        super().__init__(session)
        self.site = rkc.Site(session)
        self.code = CodeNamespace(self.site)

    def create_project(
        self, name: str, description: str = "", user_email_address: str | None = None
    ) -> Project:
        """Create (or reopen, if you have one of that name) a project for your requests."""
        if user_email_address and user_email_address.strip().lower() != self.email:
            raise PermissionError(
                f"Projects belong to the logged-in researcher ({self.email}); "
                f"log in as {user_email_address} to create one for them."
            )
        try:
            record = self.site.create_project(name, description)
        except DatasiteError as exc:
            if exc.status != 409:
                raise
            record = next(p for p in self.site.projects() if p["name"] == name)
        return Project(self.site, record)

    @property
    def projects(self) -> list[Project]:
        return [Project(self.site, p) for p in self.site.projects()]

    @property
    def requests(self) -> RequestList:
        """Your code requests, oldest first."""
        return RequestList(self.site.requests)

    def __getattr__(self, name: str) -> Any:
        return delegate(self, "site", name)

    def _repr_html_(self) -> str:
        return self._header() + self.datasets._repr_html_()


def client_for(session: ApiSession) -> OwnerClient | ResearcherClient:
    """The client that fits the role the site reported at login."""
    if session.user.get("role") in ("owner", "reviewer"):
        return OwnerClient(session)
    return ResearcherClient(session)


def site_url(url: str = "localhost", port: int | str | None = None) -> str:
    """``"localhost", 8080`` -> ``"http://localhost:8080"``; a full URL is kept."""
    if "://" not in url:
        url = f"http://{url}"
    parts = urlsplit(url)
    if port is not None and parts.port is None:
        url = f"{parts.scheme}://{parts.hostname}:{port}{parts.path}"
    return url.rstrip("/")


def login(
    url: str = "localhost",
    port: int | str | None = None,
    *,
    email: str,
    password: str,
) -> OwnerClient | ResearcherClient:
    """Log in to a running datasite; a development password raises a ``DevPasswordWarning``."""
    return client_for(ApiSession.login(site_url(url, port), email, password))
