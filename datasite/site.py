"""One running datasite: its settings, database, executor and background services.

``Site`` is what the API routes, the web pages and the CLI share; creating one migrates
the database, makes sure an owner account exists and fails runs a crash left behind.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from datasite.auth.passwords import generate_password, hash_password
from datasite.config import DEV_OWNER_EMAIL, DEV_OWNER_PASSWORD, TEXT_CACHE_ENV, Settings
from datasite.db.models import User
from datasite.db.session import make_engine, make_sessionmaker, migrate
from datasite.review import Reviewer
from datasite.runs import Runner
from datasite.store import LocalStorage, ObjectStorage, Storage, make_storage
from datasite.watch import StateWatch

if TYPE_CHECKING:
    from datasite.execution.executor import Executor as JobExecutor

log = logging.getLogger("datasite")

DEV_PASSWORD_WARNING = (
    "WARNING: this datasite runs in development mode with the fixed owner password "
    f"'{DEV_OWNER_PASSWORD}' for {DEV_OWNER_EMAIL}. Anyone who can reach it can log in as "
    "the owner. Never put private data on it."
)


class Site:
    """The services of one datasite process.

    >>> import tempfile, pathlib
    >>> site = Site(Settings(data_dir=pathlib.Path(tempfile.mkdtemp()), dev_mode=True))
    >>> with site.sessions() as db: db.scalar(select(User.email))
    'info@openmined.org'
    >>> site.close()
    """

    def __init__(
        self,
        settings: Settings,
        executor: JobExecutor | None = None,
        store: Storage | None = None,
    ) -> None:
        """``executor`` runs the jobs (a test's in-process one); by default the one
        ``settings`` names, started on first use. ``store`` keeps the asset tables; by
        default the folder ``settings.assets_dir``."""
        self.settings = settings
        for folder in (
            settings.data_dir,
            settings.assets_dir,
            settings.uploads_dir,
            settings.results_dir,
            settings.work_dir,
        ):
            folder.mkdir(parents=True, exist_ok=True)
        self.engine = make_engine(settings.resolved_database_url())
        migrate(self.engine)
        self._sessionmaker = make_sessionmaker(self.engine)
        self.background = ThreadPoolExecutor(max_workers=4, thread_name_prefix="datasite-bg")
        self.watch = StateWatch()
        self._executor = executor
        self.store: Storage = store or make_storage(settings)
        if isinstance(self.store, LocalStorage | ObjectStorage):
            for folder in self.store.sweep_partial():
                log.warning("removed an incomplete asset folder left by a crash: %s", folder)
        self._bootstrap_owner()
        collaborators = (
            self.sessions,
            settings,
            lambda: self.executor,
            self.watch,
            self.background,
            self.store,
        )
        self.runner = Runner(*collaborators)
        self.reviewer = Reviewer(*collaborators, runner=self.runner)
        self.runner.fail_interrupted_runs()
        self.reviewer.check_pending()
        if settings.warm_text_cache:
            self.background.submit(_warm_text_cache, settings.text_cache_dir)

    @contextmanager
    def sessions(self) -> Iterator[Session]:
        with self._sessionmaker() as db:
            yield db

    def new_session(self) -> Session:
        """A session the caller closes (for code that cannot use ``with``)."""
        return self._sessionmaker()

    @property
    def executor(self) -> JobExecutor:
        """The sandbox executor, started on first use so a bare API start stays light."""
        if self._executor is None:
            from datasite.execution.executor import make_executor

            self._executor = make_executor(
                self.settings.executor,
                self.settings.executor_concurrency,
                self.settings.scheduler_address,
                worker_env={TEXT_CACHE_ENV: str(self.settings.text_cache_dir)},
            )
        return self._executor

    def uses_dev_password(self, user: User, password: str) -> bool:
        return (
            self.settings.dev_mode
            and user.email == DEV_OWNER_EMAIL
            and (password == DEV_OWNER_PASSWORD)
        )

    def _bootstrap_owner(self) -> None:
        with self.sessions() as db:
            if db.scalar(select(User.id).where(User.role == "owner").limit(1)) is not None:
                if self.settings.dev_mode:
                    print(DEV_PASSWORD_WARNING, file=sys.stderr, flush=True)
                return
            s = self.settings
            if s.owner_email and s.owner_password:
                email, password, shown = s.owner_email, s.owner_password, False
            elif s.dev_mode:
                email, password, shown = DEV_OWNER_EMAIL, DEV_OWNER_PASSWORD, False
                print(DEV_PASSWORD_WARNING, file=sys.stderr, flush=True)
            else:
                email = s.owner_email or "owner@datasite.local"
                password, shown = generate_password(), True
            db.add(
                User(
                    email=email.lower(),
                    name="Data owner",
                    role="owner",
                    password_hash=hash_password(password),
                )
            )
            db.commit()
        if shown:
            print(
                f"Created the owner account {email} with the one-time password: {password}\n"
                "It is shown only now; store it in your password manager.",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        """Finish or cancel the runs in flight and record them (``Runner.shutdown``),
        then stop the background pool and the executor."""
        self.runner.shutdown(self.settings.shutdown_grace_seconds)
        self.background.shutdown(wait=True, cancel_futures=False)
        if self._executor is not None:
            self._executor.close()
        self.engine.dispose()


def _warm_text_cache(folder: Path) -> None:
    """Compute the text privatization's neighbour table into ``folder`` (once: a later
    start finds it there); the releaser reads it from there (``datasite.execution.
    releasing``). Without the ``text`` extra there is nothing to warm."""
    try:
        from researcher_kit.dp.text import warm_cache
    except ImportError:
        return
    try:
        path = warm_cache(folder)
    except Exception:  # noqa: BLE001 - a cold cache only costs time; say so and go on
        log.exception("could not warm the text privatization cache in %s", folder)
    else:
        log.info("text privatization cache ready: %s", path)
