"""``sy.orchestra.launch``: a development datasite on this machine, in a child process.

The site keeps its database and assets in a folder named after it, under
``$DATASITE_ORCHESTRA_HOME`` (default ``~/.cache/datasite``); ``reset=True`` wipes that
folder first. It runs in development mode: the owner is ``info@openmined.org`` with the
password ``changethis``, and every login with that password warns loudly
(``DevPasswordWarning``). Never put private data on a development site.

>>> site = launch(name="user_engagement_data_center", reset=True)  # doctest: +SKIP
>>> owner = site.login(email="info@openmined.org", password="changethis")  # doctest: +SKIP
>>> site.land()  # doctest: +SKIP
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any

from datasite.client.embedded import EmbeddedSite
from datasite.client.http import ApiSession
from researcher_kit.syft_compat.clients import OwnerClient, ResearcherClient, client_for

_LAUNCHED: dict[Path, SiteHandle] = {}


def orchestra_home() -> Path:
    """Where launched sites keep their folders."""
    home = os.environ.get("DATASITE_ORCHESTRA_HOME")
    return Path(home) if home else Path.home() / ".cache" / "datasite"


def site_folder(name: str) -> Path:
    """The data folder of the site called ``name`` (a filesystem-safe slug of it)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name.strip()).strip("-.") or "datasite"
    return orchestra_home() / slug


class SiteHandle:
    """A launched development site: ``login``, ``url``, ``port``, ``land()``."""

    def __init__(self, name: str, process: EmbeddedSite) -> None:
        self.name = name
        self.process = process

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def port(self) -> int:
        return self.process.port

    @property
    def data_dir(self) -> Path:
        return self.process.data_dir

    def login(self, email: str, password: str) -> OwnerClient | ResearcherClient:
        """Log in; the client fits the account's role (owner/reviewer or researcher)."""
        # ApiSession.login warns about a dev password at *our caller's* line.
        return client_for(ApiSession.login(self.url, email, password))

    def land(self) -> None:
        """Stop the site (its data folder stays unless the next launch resets it)."""
        self.process.stop()
        if _LAUNCHED.get(self.data_dir) is self:
            del _LAUNCHED[self.data_dir]

    def __enter__(self) -> SiteHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.land()

    def __repr__(self) -> str:
        running = self.process.process is not None
        return f"<Datasite {self.name} at {self.url}: {'running' if running else 'landed'}>"


def launch(
    name: str,
    port: int | str | None = None,
    reset: bool = False,
    *,
    data_dir: str | Path | None = None,
    database_url: str | None = None,
    **pysyft_options: Any,
) -> SiteHandle:
    """Start a development datasite called ``name`` and return its handle.

    ``port`` None or ``"auto"`` picks a free port. Launching a name this process already
    launched lands the earlier site first, so a re-run notebook cell does not collide.
    PySyft's other options (``dev_mode``, ``n_consumers``...) are accepted and ignored.
    """
    if pysyft_options:
        warnings.warn(
            f"orchestra.launch ignores {', '.join(sorted(pysyft_options))}: a launched "
            "site is always a local development site.",
            stacklevel=2,
        )
    folder = Path(data_dir) if data_dir else site_folder(name)
    if folder in _LAUNCHED:
        _LAUNCHED[folder].land()
    if reset and folder.exists():
        shutil.rmtree(folder)
    process = EmbeddedSite(
        folder,
        port=None if port in (None, "auto") else int(port),
        database_url=database_url,
        dev=True,
        # Empty values override an owner configured in the environment: dev owner only.
        env={"DATASITE_OWNER_EMAIL": "", "DATASITE_OWNER_PASSWORD": ""}
        | ({} if database_url else {"DATASITE_DATABASE_URL": ""}),
    )
    process.start()
    handle = SiteHandle(name, process)
    _LAUNCHED[folder] = handle
    atexit.register(handle.land)
    print(f"Datasite {name!r} is up at {handle.url} (data in {folder}).")
    return handle
