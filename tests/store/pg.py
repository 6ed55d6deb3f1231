"""Throw-away Postgres databases for tests (importable by other test packages).

The server comes from ``ASHD_TEST_PG_URL`` (default: trust auth as ``postgres`` on
127.0.0.1:5432). ``fresh_pg_database()`` creates ``ashd_test_<hex>`` through the
server's ``postgres`` database and drops it afterwards. If the server is down it
raises :class:`PostgresUnavailable`, whose message says how to start it: tests must
fail, not skip, when Postgres is missing.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import NullPool

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
START_HINT = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"


class PostgresUnavailable(RuntimeError):
    """The test Postgres server cannot be reached."""


def server_url() -> str:
    """The configured server URL (any database; ``postgres`` is used for admin)."""
    return os.environ.get("ASHD_TEST_PG_URL", DEFAULT_URL)


@contextmanager
def backend_database(backend: str) -> Iterator[str | None]:
    """The database URL of a test on ``backend``: None for "sqlite" (ashd's default, a file
    under its data dir), else a fresh Postgres database. Postgres down fails the test."""
    if backend == "sqlite":
        yield None
        return
    try:
        with fresh_pg_database() as url:
            yield url
    except PostgresUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


@contextmanager
def fresh_pg_database() -> Iterator[str]:
    """Yield the URL of a new, empty database; drop it (forcibly) on exit."""
    admin = _admin_engine()
    name = f"ashd_test_{secrets.token_hex(6)}"
    try:
        _execute(admin, f'CREATE DATABASE "{name}"')
        try:
            url = make_url(server_url()).set(database=name)
            yield url.render_as_string(hide_password=False)
        finally:
            _execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


def _admin_engine() -> Engine:
    url = make_url(server_url()).set(database="postgres")
    engine = sa.create_engine(
        url, isolation_level="AUTOCOMMIT", poolclass=NullPool,
        connect_args={"connect_timeout": 5},
    )
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as exc:
        masked = url.render_as_string(hide_password=True)
        raise PostgresUnavailable(
            f"Postgres at {masked} is unreachable ({exc.orig}). Start it with:\n"
            f"    {START_HINT}\nor point ASHD_TEST_PG_URL at a running server."
        ) from exc
    return engine


def _execute(engine: Engine, sql: str) -> None:
    with engine.connect() as conn:
        conn.exec_driver_sql(sql)
