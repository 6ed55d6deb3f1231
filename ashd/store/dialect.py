"""The few places where SQLite and Postgres need different SQL constructs.

Pure functions over a live connection; thread-safety is the connection's.
"""

from __future__ import annotations

import os
import time

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

UpsertInsert = postgresql.Insert | sqlite.Insert


def upsert_insert(conn: Connection, table: sa.Table) -> UpsertInsert:
    """An INSERT supporting ``on_conflict_do_update`` and ``excluded`` on this dialect."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def is_unique_violation(exc: sa.exc.IntegrityError) -> bool:
    """True if the database rejected a duplicate key (not a NULL or FK violation)."""
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate is not None:
        return bool(sqlstate == "23505")
    return "UNIQUE constraint failed" in str(exc.orig)


def new_id() -> str:
    """A fresh time-ordered UUID (version 7, RFC 9562), 36 characters: the Unix time in
    milliseconds (48 bits), then 74 random bits. Every stored row gets one, and each table's
    primary key is an index on it: ids that grow with time put a commit's rows on that index's
    last page, where random ones put each row on a page of its own, to be read and rewritten
    (``benchmarks/store_commit.py``). The random bits keep ids of one millisecond apart and
    unguessable; the time an id shows is its row's ``created_at``, which the API shows anyway."""
    raw = bytearray((time.time_ns() // 1_000_000).to_bytes(6, "big") + os.urandom(10))
    raw[6] = (raw[6] & 0x0F) | 0x70  # version 7
    raw[8] = (raw[8] & 0x3F) | 0x80  # the RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def check_ids(*values: object) -> None:
    """Refuse ids longer than 36 characters (raises ValueError).

    Postgres enforces ``VARCHAR(36)`` and SQLite does not; checking before writes
    makes both backends behave alike.
    """
    for value in values:
        if isinstance(value, str) and len(value) > 36:
            raise ValueError(f"id {value[:40]!r}... is longer than 36 characters")
