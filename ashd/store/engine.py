"""Engine construction for SQLite (file, WAL) and Postgres (psycopg 3).

``create_engine_for`` returns a ready engine whose pool is safe to share between
threads. SQLite transactions are begun by us rather than by the sqlite3 module, so
each transaction is real (reads see one snapshot) and write transactions can start
with ``BEGIN IMMEDIATE`` (see :data:`WRITE_OPTION`), which serializes writers through
``busy_timeout`` instead of failing on lock upgrades.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, make_url

from .errors import StoreError, StoreUnavailable
from .translate import reason as first_line

logger = logging.getLogger(__name__)

WRITE_OPTION = "ashd_write"
"""Execution option: on SQLite, ``True`` makes the next transaction ``BEGIN IMMEDIATE``."""

_SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
    "PRAGMA synchronous=NORMAL",
)


def mask_url(url: str | URL) -> str:
    """The URL with any password replaced by ``***``; safe to log and show."""
    return make_url(url).render_as_string(hide_password=True)


def backoff_delays(retries: int, initial: float, maximum: float) -> list[float]:
    """Waits between connection attempts: doubling from ``initial``, capped at ``maximum``."""
    return [min(initial * 2**i, maximum) for i in range(retries)]


def parse_url(url: str) -> URL:
    """Parse ``url``; plain ``postgresql://`` and ``postgres://`` mean psycopg 3.

    Raises StoreError if the URL cannot be parsed (the message omits the URL, which
    may hold a password).
    """
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError as exc:
        raise StoreError(
            "invalid database URL; expected sqlite:///path or postgresql://user@host/db"
        ) from exc
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def create_engine_for(
    url: str,
    *,
    retries: int = 5,
    initial_delay: float = 0.5,
    max_delay: float = 8.0,
) -> Engine:
    """Build an engine for ``url`` and check that the database answers.

    SQLite: the file's parent directories are created. Postgres: up to ``retries``
    further attempts, waiting 0.5, 1, 2, 4, 8 s by default (blocks the caller).
    Raises StoreUnavailable (message names the masked URL) if the database cannot
    be opened, StoreError for unsupported URLs.
    """
    parsed = parse_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        engine = _sqlite_engine(parsed)
        delays: list[float] = []
    elif backend == "postgresql":
        engine = sa.create_engine(
            parsed, pool_pre_ping=True, connect_args=_pg_connect_args(parsed)
        )
        delays = backoff_delays(retries, initial_delay, max_delay)
    else:
        raise StoreError(f"unsupported database URL {mask_url(parsed)}; use sqlite or postgresql")
    _wait_until_reachable(engine, delays)
    return engine


def _sqlite_engine(url: URL) -> Engine:
    database = url.database or ""
    if database in ("", ":memory:") or url.query.get("mode") == "memory":
        # Each pooled connection would see its own empty in-memory database.
        raise StoreError("in-memory SQLite is not supported; give a file path")
    try:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreUnavailable(f"cannot create directory for {mask_url(url)}: {exc}") from exc
    engine = sa.create_engine(url, connect_args={"check_same_thread": False})
    sa.event.listen(engine, "connect", _on_sqlite_connect)
    sa.event.listen(engine, "begin", _on_sqlite_begin)
    return engine


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take BEGIN away from the sqlite3 module; _on_sqlite_begin emits it instead.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        for pragma in _SQLITE_PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()


def _on_sqlite_begin(conn: Connection) -> None:
    write = conn.get_execution_options().get(WRITE_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _pg_connect_args(url: URL) -> dict[str, Any]:
    # Without a timeout an unroutable host blocks each attempt for minutes.
    return {} if "connect_timeout" in url.query else {"connect_timeout": 5}


def _wait_until_reachable(engine: Engine, delays: list[float]) -> None:
    attempts = len(delays) + 1
    for attempt in range(1, attempts + 1):
        try:
            with engine.connect():
                return
        except sa.exc.DBAPIError as exc:
            reason = first_line(exc)
            if attempt == attempts:
                engine.dispose()
                raise StoreUnavailable(
                    f"database {mask_url(engine.url)} is unreachable after "
                    f"{attempts} attempt(s): {reason}"
                ) from exc
            delay = delays[attempt - 1]
            logger.warning(
                "database %s unreachable (%s); retrying in %.1fs (attempt %d/%d)",
                mask_url(engine.url), reason, delay, attempt, attempts,
            )
            time.sleep(delay)

