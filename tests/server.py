"""Test servers: an ``EmbeddedSite`` on SQLite, or on a fresh PostgreSQL database on
127.0.0.1:5432 when ``DATASITE_TEST_DB=postgres``."""

from __future__ import annotations

import os
import uuid

OWNER_EMAIL = "steward@hospital.example"
OWNER_PASSWORD = "owner-password-for-tests"
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


def use_postgres() -> bool:
    return os.environ.get("DATASITE_TEST_DB", "sqlite") == "postgres"


def create_pg_database() -> str:
    import psycopg

    name = f"datasite_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


def drop_pg_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
