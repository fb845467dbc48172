"""Site settings, read from arguments or ``DATASITE_*`` environment variables.

Every field has its variable: ``DATASITE_`` and the field's name in capitals
(``DATASITE_RUN_CPU_SECONDS``), except ``scheduler_address``, which is
``DATASITE_SCHEDULER``. Explicit arguments win over the environment; an empty variable
counts as unset.

The embedded default is SQLite and a local asset folder inside one data directory, so a
site is a single folder an owner can back up; production points ``database_url`` at
PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from datasite.contract.job import Limits

DEV_OWNER_EMAIL = "info@openmined.org"
DEV_OWNER_PASSWORD = "changethis"


#: Where the Dask executor finds its TLS credentials and the insecure opt-out: one list
#: for ``Settings.from_env`` and for ``datasite.execution.executor.make_executor``.
DASK_ENV = {
    "dask_tls_ca_file": "DATASITE_DASK_TLS_CA_FILE",
    "dask_tls_cert_file": "DATASITE_DASK_TLS_CERT_FILE",
    "dask_tls_key_file": "DATASITE_DASK_TLS_KEY_FILE",
    "dask_allow_insecure": "DATASITE_DASK_ALLOW_INSECURE",
}


#: Where ``researcher_kit.dp.text`` keeps its neighbour table (it reads this variable; the
#: site points its workers, and through them the releaser, at ``Settings.text_cache_dir``).
TEXT_CACHE_ENV = "DATASITE_TEXT_CACHE"


class Settings(BaseSettings):
    """Everything a datasite process needs to start.

    >>> s = Settings(data_dir=Path("/tmp/site"))
    >>> s.resolved_database_url()
    'sqlite:////tmp/site/datasite.db'
    >>> import os
    >>> os.environ["DATASITE_RUN_CPU_SECONDS"] = "7"
    >>> Settings(data_dir=Path("/tmp/site")).run_cpu_seconds
    7
    >>> Settings(data_dir=Path("/tmp/site"), run_cpu_seconds=9).run_cpu_seconds
    9
    >>> del os.environ["DATASITE_RUN_CPU_SECONDS"]
    """

    model_config = SettingsConfigDict(
        env_prefix="DATASITE_", env_ignore_empty=True, extra="ignore", populate_by_name=True
    )

    #: the site's folder; ``./datasite-data`` when neither an argument nor the variable
    data_dir: Path = Field(default_factory=lambda: Path.cwd() / "datasite-data")
    host: str = "127.0.0.1"
    port: int = 8080
    database_url: str | None = None
    owner_email: str | None = None
    owner_password: str | None = None
    dev_mode: bool = False  # the embedded development site: fixed owner password allowed
    token_ttl_seconds: int = 8 * 3600
    max_upload_bytes: int = 2 * 1024**3
    # real tables are stored as Parquet files of at most this many rows (one unit of
    # parallel work for the releaser); DATASITE_PARTITION_ROWS
    partition_rows: int = Field(default=1024 * 1024, ge=1)
    #: where asset tables are kept: None for the data folder's ``assets/``; an fsspec URL
    #: (``s3://bucket/prefix``) for an object store, with ``assets/`` as its local cache
    #: (``datasite.store.object_storage``); DATASITE_STORAGE_URL
    storage_url: str | None = None
    #: the object store's fsspec options as JSON (S3: ``{"endpoint_url": ..., "key": ...,
    #: "secret": ...}``); DATASITE_STORAGE_OPTIONS
    storage_options: dict[str, str] = Field(default_factory=dict, repr=False)
    executor: str = "local"
    executor_concurrency: int = 2
    #: compute the text privatization's neighbour table (``rk.dp.privatize_text``, the
    #: ``text`` extra) into ``text_cache_dir`` at startup, in the background, once per data
    #: folder; the releaser then reads it instead of rebuilding it per run (13-80 s on 2
    #: cores for 50,000 words); DATASITE_WARM_TEXT_CACHE
    warm_text_cache: bool = False
    #: how long a stopping server (Ctrl-C, SIGTERM) waits for runs in flight before it
    #: cancels them; DATASITE_SHUTDOWN_GRACE_SECONDS
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)
    scheduler_address: str | None = Field(
        default=None, validation_alias=AliasChoices("scheduler_address", "DATASITE_SCHEDULER")
    )
    # the Dask scheduler is reached over mutual TLS (tls://) with these (PEM files): the
    # cluster's CA, and the certificate and key the site presents as a client
    dask_tls_ca_file: str | None = None
    dask_tls_cert_file: str | None = None
    dask_tls_key_file: str | None = None
    dask_allow_insecure: bool = False  # a plain tcp:// scheduler: anyone who reaches it runs code
    run_cpu_seconds: int = 300
    run_wall_seconds: float = 600.0
    run_memory_bytes: int = 4 * 1024**3
    #: all stored outputs of one request, over all its runs (blobs and manifests)
    max_request_output_bytes: int = 256 * 1024**2
    site_name: str = "datasite"
    secret_key: str | None = Field(default=None, repr=False)

    def run_limits(self) -> Limits:
        """Resource limits for runs on the private data."""
        return Limits(
            cpu_seconds=self.run_cpu_seconds,
            wall_seconds=self.run_wall_seconds,
            memory_bytes=self.run_memory_bytes,
        )

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'datasite.db'}"

    @property
    def assets_dir(self) -> Path:
        return self.data_dir / "assets"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def results_dir(self) -> Path:
        return self.data_dir / "results"

    @property
    def text_cache_dir(self) -> Path:
        return self.data_dir / "text-cache"

    @property
    def work_dir(self) -> Path:
        return self.data_dir / "work"

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Settings from ``DATASITE_*`` variables, with explicit arguments (not None)
        winning."""
        return cls(**{k: v for k, v in overrides.items() if v is not None})
