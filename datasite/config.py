"""Site settings, read from arguments or ``DATASITE_*`` environment variables.

The embedded default is SQLite and a local asset folder inside one data directory, so a
site is a single folder an owner can back up; production points ``database_url`` at
PostgreSQL.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field

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


class Settings(BaseModel):
    """Everything a datasite process needs to start.

    >>> s = Settings(data_dir=Path("/tmp/site"))
    >>> s.resolved_database_url()
    'sqlite:////tmp/site/datasite.db'
    """

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8080
    database_url: str | None = None
    owner_email: str | None = None
    owner_password: str | None = None
    dev_mode: bool = False  # the embedded development site: fixed owner password allowed
    token_ttl_seconds: int = 8 * 3600
    max_upload_bytes: int = 2 * 1024**3
    executor: str = "local"
    executor_concurrency: int = 2
    scheduler_address: str | None = None
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
    def work_dir(self) -> Path:
        return self.data_dir / "work"

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Settings from ``DATASITE_*`` variables, with explicit arguments winning."""
        env = {
            "data_dir": os.environ.get("DATASITE_DATA_DIR"),
            "host": os.environ.get("DATASITE_HOST"),
            "port": os.environ.get("DATASITE_PORT"),
            "database_url": os.environ.get("DATASITE_DATABASE_URL"),
            "owner_email": os.environ.get("DATASITE_OWNER_EMAIL"),
            "owner_password": os.environ.get("DATASITE_OWNER_PASSWORD"),
            "dev_mode": os.environ.get("DATASITE_DEV_MODE"),
            "executor": os.environ.get("DATASITE_EXECUTOR"),
            "executor_concurrency": os.environ.get("DATASITE_EXECUTOR_CONCURRENCY"),
            "scheduler_address": os.environ.get("DATASITE_SCHEDULER"),
            "max_upload_bytes": os.environ.get("DATASITE_MAX_UPLOAD_BYTES"),
            "token_ttl_seconds": os.environ.get("DATASITE_TOKEN_TTL_SECONDS"),
            "run_cpu_seconds": os.environ.get("DATASITE_RUN_CPU_SECONDS"),
            "run_wall_seconds": os.environ.get("DATASITE_RUN_WALL_SECONDS"),
            "run_memory_bytes": os.environ.get("DATASITE_RUN_MEMORY_BYTES"),
            "max_request_output_bytes": os.environ.get("DATASITE_MAX_REQUEST_OUTPUT_BYTES"),
        }
        env.update({field: os.environ.get(name) for field, name in DASK_ENV.items()})
        values = {k: v for k, v in env.items() if v not in (None, "")}
        values.update({k: v for k, v in overrides.items() if v is not None})
        values.setdefault("data_dir", Path.cwd() / "datasite-data")
        return cls.model_validate(values)
