"""The turn path's inserts on the driver's own connection, without SQLAlchemy's per-statement work.

A turn commits many small batches (group commit: a frame is delivered only once the batch
holding it has committed), so the fixed cost of one write transaction is paid several times
per message. Through SQLAlchemy Core a one-row insert transaction costs ~150 µs of CPU
(connection and transaction objects, events, the compiled-statement cache, parameter
processing); the driver's ``executemany`` on a pooled connection costs ~35 µs. These few
inserts have no SQL to build: plain column lists, text and numbers.

Same promises as :meth:`Store._write`: one transaction per :meth:`RawWrites.transaction`,
``BEGIN IMMEDIATE`` on SQLite (writers serialize through ``busy_timeout``), the pool's
connections (Postgres: pre-pinged at checkout), and the same error translation: a driver
error is wrapped in SQLAlchemy's class for it (``DBAPIError.instance``), so the caller's
``translated_errors`` turns it into Conflict, StoreUnavailable or StoreError as before. A
connection the driver reports as disconnected is invalidated, not returned to the pool.

Thread-safe: each transaction takes its own pooled connection.

On SQLite the event loop may also write at once (:meth:`RawWrites.transaction_at_once`, one
caller at a time): on a connection of its own that never waits for SQLite's write lock and
never checkpoints the WAL (a checkpoint writes and syncs the database file; the writer thread
does it, :meth:`RawWrites.checkpoint`).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from . import schema, usage
from .dialect import check_ids, new_id
from .errors import StoreError
from .notify import STREAM_CHANNEL
from .rows import SessionRow, encode_json
from .sequences import LogSequences

Cursor = Any  # a DBAPI cursor (sqlite3 or psycopg)
_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class WouldWait(Exception):
    """A write that may not wait found SQLite's write lock taken: nothing was written."""


class RawWrites:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.sqlite = engine.dialect.name == "sqlite"
        self.mark = "?" if self.sqlite else "%s"  # both drivers take positional parameters
        self._error: type[Exception] = engine.dialect.loaded_dbapi.Error
        self._inserts: dict[tuple[str, tuple[str, ...]], str] = {}
        # SQLite: the connection of writes that never wait, made now (a checkout on the loop
        # could wait for the pool); made again after a failure invalidated it.
        self._at_once: Any = None
        if self.sqlite:
            self._at_once_connection()

    def insert(self, cursor: Cursor, table: sa.Table, columns: tuple[str, ...],
               rows: Sequence[tuple[Any, ...]]) -> None:
        """Insert ``rows`` (each the values of ``columns``, in that order)."""
        if not rows:
            return
        key = (table.name, columns)
        sql = self._inserts.get(key)
        if sql is None:
            unknown = set(columns) - set(table.columns.keys())
            if unknown:
                raise ValueError(f"{table.name} has no column(s) {sorted(unknown)}")
            marks = ", ".join([self.mark] * len(columns))
            sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608 (schema names)
            self._inserts[key] = sql
        cursor.executemany(sql, rows)

    def scalar(self, cursor: Cursor, sql: str, params: tuple[Any, ...]) -> Any:
        """The first column of the first row of ``sql`` (with :attr:`mark` placeholders), or None."""
        cursor.execute(sql, params)
        row = cursor.fetchone()
        return None if row is None else row[0]

    @contextmanager
    def transaction(self) -> Iterator[Cursor]:
        """A cursor inside one write transaction, committed when the block ends (rolled back
        when it raises). Driver errors come out as SQLAlchemy's (see the module docstring)."""
        fairy = self._engine.raw_connection()
        cursor = None
        try:
            cursor = fairy.cursor()
            if self.sqlite:
                cursor.execute("BEGIN IMMEDIATE")  # psycopg begins on the first statement
            try:
                yield cursor
            except BaseException:
                self._roll_back(fairy)
                raise
            fairy.commit()
        except self._error as exc:
            if self._engine.dialect.is_disconnect(exc, fairy.dbapi_connection, cursor):  # type: ignore[arg-type]
                fairy.invalidate(exc)
            raise sa.exc.DBAPIError.instance(None, None, exc, self._error) from exc
        finally:
            if cursor is not None:
                with contextlib.suppress(self._error):
                    cursor.close()
            fairy.close()

    @contextmanager
    def transaction_at_once(self) -> Iterator[Cursor]:
        """:meth:`transaction` for a caller that must not wait (the event loop; SQLite only, one
        caller at a time): raises WouldWait, having written nothing, when another connection
        holds SQLite's write lock. Its connection never checkpoints the WAL."""
        if not self.sqlite:
            raise WouldWait
        conn = self._at_once_connection()
        cursor = conn.cursor()
        try:
            try:
                cursor.execute("BEGIN IMMEDIATE")
            except self._error as exc:
                if getattr(exc, "sqlite_errorcode", None) in _BUSY:
                    raise WouldWait from None
                raise
            try:
                yield cursor
            except BaseException:
                self._roll_back(conn)
                raise
            conn.commit()
        except self._error as exc:
            raise sa.exc.DBAPIError.instance(None, None, exc, self._error) from exc
        finally:
            with contextlib.suppress(self._error):
                cursor.close()
            if not conn.is_valid:  # a failed rollback invalidated it: the next write makes another
                self._at_once = None

    def _at_once_connection(self) -> Any:
        if self._at_once is None:
            fairy = self._engine.raw_connection()  # the engine's pragmas, then two of its own
            cursor = fairy.cursor()
            try:
                cursor.execute("PRAGMA busy_timeout=0")
                cursor.execute("PRAGMA wal_autocheckpoint=0")
            finally:
                cursor.close()
            self._at_once = fairy
        return self._at_once

    def checkpoint(self) -> None:
        """Copy the WAL into the database file as far as no reader needs it (SQLite's passive
        checkpoint; the writes at once never do it). Nothing on Postgres."""
        if self.sqlite:
            with self._engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        """Close the connection of writes at once (it is not handed back to the pool: its
        pragmas are its own)."""
        if self._at_once is not None:
            self._at_once.invalidate()
            self._at_once = None

    def _roll_back(self, fairy: Any) -> None:
        """Roll back after a failure; a connection that cannot even do that is not reused."""
        try:
            fairy.rollback()
        except self._error as exc:
            fairy.invalidate(exc)


# -- the turn path's appends (inside RawWrites.transaction, holding LogSequences.lock) ---
# SQL text here is built from the schema's table and column names and the driver's placeholder;
# every value is a bound parameter.

def append_log(raw: RawWrites, cursor: Cursor, seqs: LogSequences, tenant_id: str, session_id: str,
               messages: Sequence[tuple[str, str]], events: Sequence[tuple[str, str]],
               stream: Sequence[tuple[int, str, str]], now: str) -> None:
    """``Store.append_log``'s rows: messages and timeline events numbered from ``seqs``, SSE
    frames with their own ids (and, on Postgres, the fan-out's NOTIFY, delivered at commit)."""
    if messages:
        first = _take(raw, cursor, seqs, schema.messages, tenant_id, session_id, len(messages))
        raw.insert(cursor, schema.messages, _LOG_COLUMNS, [
            (new_id(), tenant_id, session_id, role, content, first + i, now)
            for i, (role, content) in enumerate(messages)])
    if events:
        first = _take(raw, cursor, seqs, schema.session_events, tenant_id, session_id, len(events))
        raw.insert(cursor, schema.session_events, _EVENT_COLUMNS, [
            (new_id(), tenant_id, session_id, kind, data, first + i, now)
            for i, (kind, data) in enumerate(events)])
    if stream:
        raw.insert(cursor, schema.stream_events, _STREAM_COLUMNS, [
            (new_id(), tenant_id, session_id, seq, event, data, now) for seq, event, data in stream])
        if not raw.sqlite:
            cursor.execute(f"SELECT pg_notify({raw.mark}, {raw.mark})",
                           (STREAM_CHANNEL, f"{session_id} {max(seq for seq, _, _ in stream)}"))


def append_transcript(raw: RawWrites, cursor: Cursor, seqs: LogSequences, tenant_id: str, session_id: str,
                      subpath: str, entries: Sequence[str], now: str) -> None:
    """Transcript entries numbered per (session, subpath) from ``seqs`` (read from the store on
    first use); a second writer of the same transcript hits its unique sequence constraint."""
    if not entries:
        return
    table = schema.transcript_entries
    m = raw.mark

    def stored_next() -> int:
        _check_session(raw, cursor, tenant_id, session_id)
        top = raw.scalar(cursor, f"SELECT COALESCE(MAX(seq), 0) FROM {table.name} "  # noqa: S608 (schema names)
                                 f"WHERE session_id = {m} AND subpath = {m}", (session_id, subpath))
        return int(top) + 1

    first = seqs.take_with(f"{table.name}/{subpath}", tenant_id, session_id, len(entries), stored_next)
    raw.insert(cursor, table, _TRANSCRIPT_COLUMNS, [
        (new_id(), tenant_id, session_id, subpath, first + i, entry, now) for i, entry in enumerate(entries)])


def usage_rows(tenant_id: str, session_id: str, agent_name: str, values: dict[str, float],
               now: str) -> list[tuple[Any, ...]]:
    """One usage event per metric of ``usage.EVENT_TYPES`` (others are ignored), to insert
    with :func:`insert_usage`."""
    return [(new_id(), tenant_id, session_id, agent_name, kind, float(value), now)
            for kind, value in values.items() if kind in usage.EVENT_TYPES]


def insert_usage(raw: RawWrites, cursor: Cursor, rows: Sequence[tuple[Any, ...]]) -> None:
    raw.insert(cursor, usage.usage_events, _USAGE_COLUMNS, rows)


# -- session rows on the lifecycle path (a create, a claim, each status change) --------------

def insert_session(raw: RawWrites, cursor: Cursor, row: SessionRow) -> None:
    """Insert a session row. Raises ValueError for over-long ids; a duplicate id is the driver's IntegrityError."""
    check_ids(row.id, row.sandbox_id, row.parent_session_id)
    values = {f: getattr(row, f) for f in _SESSION_COLUMNS}
    values["config"] = encode_json(row.config)
    raw.insert(cursor, schema.sessions, _SESSION_COLUMNS, [tuple(values[c] for c in _SESSION_COLUMNS)])


def set_session_status(raw: RawWrites, cursor: Cursor, tenant_id: str, session_id: str, status: str,
                       status_reason: str | None, now: str) -> SessionRow | None:
    """Set a session's status and reason and touch its last activity; the updated row, or
    None if the tenant has no such session."""
    m = raw.mark
    cursor.execute(f"UPDATE sessions SET status = {m}, status_reason = {m}, last_active_at = {m} "  # noqa: S608
                   f"WHERE tenant_id = {m} AND id = {m} RETURNING {', '.join(_SESSION_COLUMNS)}",
                   (status, status_reason, now, tenant_id, session_id))
    found = cursor.fetchone()
    return None if found is None else SessionRow.from_db(dict(zip(_SESSION_COLUMNS, found, strict=True)))


_SESSION_COLUMNS = tuple(SessionRow.__dataclass_fields__)
_LOG_COLUMNS = ("id", "tenant_id", "session_id", "role", "content", "sequence", "created_at")
_EVENT_COLUMNS = ("id", "tenant_id", "session_id", "type", "data", "sequence", "created_at")
_STREAM_COLUMNS = ("id", "tenant_id", "session_id", "seq", "event", "data", "created_at")
_TRANSCRIPT_COLUMNS = ("id", "tenant_id", "session_id", "subpath", "seq", "entry", "created_at")
_USAGE_COLUMNS = ("id", "tenant_id", "session_id", "agent_name", "event_type", "value", "created_at")


def _take(raw: RawWrites, cursor: Cursor, seqs: LogSequences, log: sa.Table, tenant_id: str, session_id: str,
          count: int) -> int:
    def stored_next() -> int:
        _check_session(raw, cursor, tenant_id, session_id)
        m = raw.mark
        top = raw.scalar(cursor, f"SELECT COALESCE(MAX(sequence), 0) FROM {log.name} "  # noqa: S608 (schema names)
                                 f"WHERE tenant_id = {m} AND session_id = {m}", (tenant_id, session_id))
        return int(top) + 1

    return seqs.take_with(log.name, tenant_id, session_id, count, stored_next)


def _check_session(raw: RawWrites, cursor: Cursor, tenant_id: str, session_id: str) -> None:
    """StoreError unless the tenant has the session (an append never lands in another's)."""
    m = raw.mark
    if raw.scalar(cursor, f"SELECT id FROM sessions WHERE id = {m} AND tenant_id = {m}",  # noqa: S608
                  (session_id, tenant_id)) is None:
        raise StoreError(f"session {session_id} not found for tenant {tenant_id}")
