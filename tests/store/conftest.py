"""Fixtures: a migrated ``Store`` per test, on SQLite and on Postgres.

SQLite gets a new file per test. Postgres gets one fresh database per test session
(``pg.fresh_pg_database``): ``empty_store`` recreates its ``public`` schema, ``store``
empties the tables (or rebuilds them if a test left the schema elsewhere than head).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from ashd.store import Store, format_utc, migrate
from ashd.store.schema import metadata

from .pg import PostgresUnavailable, fresh_pg_database

BACKENDS = ["sqlite", "postgresql"]


class FakeClock:
    """Timestamps one millisecond apart per call, so ordering never depends on speed."""

    def __init__(self) -> None:
        self._ticks = itertools.count()  # next() is atomic under the GIL
        self._start = datetime(2026, 11, 23, 7, 52, 30, tzinfo=UTC)

    def __call__(self) -> str:
        return format_utc(self._start + timedelta(milliseconds=next(self._ticks)))


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    try:
        with fresh_pg_database() as url:
            yield url
            return
    except PostgresUnavailable as exc:
        reason = str(exc)
    pytest.fail(reason, pytrace=False)  # outside except: no chained traceback noise


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of a database on the parametrized backend; its contents are unspecified."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'ashd.db'}"
    url: str = request.getfixturevalue("pg_database_url")
    return url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def empty_store(db_url: str, clock: FakeClock) -> Iterator[Store]:
    """A Store on an empty, never migrated database."""
    if db_url.startswith("postgresql"):
        _reset_public_schema(db_url)
    store = Store(db_url, clock=clock)
    yield store
    store.close()


@pytest.fixture
def store(db_url: str, clock: FakeClock) -> Iterator[Store]:
    """A Store on a migrated database without rows.

    Postgres reuses the session's schema when it is already at head (deleting rows
    is much cheaper than recreating tables); otherwise it is rebuilt.
    """
    store = Store(db_url, clock=clock)
    with _engine(db_url) as engine:
        if migrate.current_revision(engine) == migrate.HEAD:
            with engine.begin() as conn:
                for table in reversed(metadata.sorted_tables):
                    conn.execute(table.delete())
        else:
            if db_url.startswith("postgresql"):
                _reset_public_schema(db_url)
            store.migrate()
    yield store
    store.close()


@contextmanager
def _engine(url: str) -> Iterator[Engine]:
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        yield engine
    finally:
        engine.dispose()


def _reset_public_schema(url: str) -> None:
    with _engine(url) as engine, engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
