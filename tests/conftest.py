"""Fixtures: a real datasite server process (SQLite or PostgreSQL) and logged-in clients."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from datasite.client.embedded import EmbeddedSite
from tests.inprocess import InProcessSite
from tests.server import (
    OWNER_EMAIL,
    OWNER_PASSWORD,
    create_pg_database,
    drop_pg_database,
    use_postgres,
)

RESEARCHER_EMAIL = "bob@uni.example"
RESEARCHER_PASSWORD = "bob-password-123"
REVIEWER_EMAIL = "rita@hospital.example"
REVIEWER_PASSWORD = "rita-password-123"


def needs(*modules: str) -> pytest.MarkDecorator:
    """Skip unless ``modules`` are installed. Unlike ``pytest.importorskip`` it imports
    nothing: torch, Opacus and JAX would cost seconds in every test process that
    collects the suite, run their tests or not."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    return pytest.mark.skipif(bool(missing), reason=f"needs {', '.join(missing)}")


def _server(tmp: Path) -> Iterator[EmbeddedSite]:
    url = create_pg_database() if use_postgres() else None
    server = EmbeddedSite(
        tmp / "site",
        database_url=url,
        owner_email=OWNER_EMAIL,
        owner_password=OWNER_PASSWORD,
        env={"DATASITE_NO_PROGRESS": "1"},
    ).start()
    try:
        yield server
    finally:
        server.stop()
        if url:
            drop_pg_database(url)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedSite]:
    """A fresh server process for one test."""
    yield from _server(tmp_path)


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedSite]:
    """One server process shared by the tests of a module."""
    yield from _server(tmp_path_factory.mktemp("shared"))


@pytest.fixture(scope="module")
def study_clients(shared_server: EmbeddedSite):  # type: ignore[no-untyped-def]
    """The owner's and the researcher's clients on the shared server, with a project."""
    owner, researcher, _, _ = setup_site(shared_server.url)
    researcher.create_project("Study")
    return owner, researcher


def inprocess(tmp: Path, **settings: Any) -> Iterator[InProcessSite]:
    """A site in this process (``tests.inprocess``); every ``ApiSession`` opened on its
    address goes through its transport, so the clients are the usual ones. ``settings``
    are ``Settings`` fields for this site."""
    from datasite.client.http import ApiSession

    url = create_pg_database() if use_postgres() else None
    site = InProcessSite(
        tmp / "site", database_url=url, owner_email=OWNER_EMAIL, owner_password=OWNER_PASSWORD,
        **settings,
    )  # fmt: skip
    original = ApiSession.__init__

    def through_site(self, address, token=None, timeout=60.0, transport=None):  # type: ignore[no-untyped-def]
        if transport is None and address.rstrip("/") == site.url:
            transport = site.transport
        original(self, address, token, timeout, transport)

    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(ApiSession, "__init__", through_site)
            yield site
    finally:
        site.stop()
        if url:
            drop_pg_database(url)


@pytest.fixture(scope="module")
def inprocess_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessSite]:
    """One in-process site shared by the tests of a module."""
    yield from inprocess(tmp_path_factory.mktemp("inprocess"))


@pytest.fixture(scope="module")
def inprocess_study_clients(inprocess_site: InProcessSite):  # type: ignore[no-untyped-def]
    """``study_clients`` on the in-process site: for rule tests that need no sandbox."""
    owner, researcher, _, _ = setup_site(inprocess_site.url)
    researcher.create_project("Study")
    return owner, researcher


def cli_as_owner(monkeypatch: pytest.MonkeyPatch, url: str, columns: int = 1000) -> None:
    """Point the CLI, invoked in this process (``CliRunner``), at ``url`` as the owner,
    printing ``columns`` wide (wide enough that no line folds, long temporary paths
    included). Its console read ``COLUMNS`` when ``datasite.cli`` was first imported (by
    whichever test came first), so a fresh one replaces it."""
    from rich.console import Console

    import datasite.cli

    for name, value in {
        "DATASITE_NO_TOKEN_CACHE": "1",
        "DATASITE_URL": url,
        "DATASITE_EMAIL": OWNER_EMAIL,
        "DATASITE_PASSWORD": OWNER_PASSWORD,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(datasite.cli, "console", Console(width=columns))


def pings_tables(rows: int = 2000, mock_rows: int = 200, seed: int = 0) -> tuple:
    """A small pings-like table and its mock with the same schema."""
    rng = np.random.default_rng(seed)

    def make(n: int, offset: int) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "id": np.arange(offset, offset + n, dtype="int64"),
                "gender": rng.choice(["MALE", "FEMALE"], n),
                "age": rng.integers(18, 90, n).astype("int64"),
                "online_hours": rng.gamma(2.0, 1.0, n),
            }
        )

    return make(rows, 0), make(mock_rows, 10_000_000)


def setup_site(url: str, dataset: str = "Pings"):  # type: ignore[no-untyped-def]
    """Owner uploads a dataset and creates a researcher and a reviewer; returns the clients."""
    import researcher_kit as rk
    from datasite import admin
    from datasite.client.http import DatasiteError

    owner = admin.connect(url, OWNER_EMAIL, OWNER_PASSWORD)
    real, mock = pings_tables()
    owner.datasets.upload(
        name=dataset,
        assets={"pings": (real, mock)},
        description="Pings per user",
        summary="User engagement pings",
        progress=False,
    )
    for email, name, role, password in (
        (RESEARCHER_EMAIL, "Dr. Bob", "researcher", RESEARCHER_PASSWORD),
        (REVIEWER_EMAIL, "Rita Reviewer", "reviewer", REVIEWER_PASSWORD),
    ):
        try:
            owner.users.create(email=email, name=name, role=role, password=password)
        except DatasiteError as exc:
            if exc.status != 409:
                raise
    researcher = rk.login(url, RESEARCHER_EMAIL, RESEARCHER_PASSWORD)
    return owner, researcher, real, mock
