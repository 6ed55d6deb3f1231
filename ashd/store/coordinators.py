"""Which coordinators are alive, so several on one Postgres recover only the dead ones' work.

Every API daemon on Postgres (a coordinator, or a standalone daemon sharing the database)
records its id (``/health``'s ``coordinatorId``) on the work it claims (``claimed_by`` on
eval runs and queue items) and holds, for as long as it runs, a *session-level advisory
lock* on that id on a dedicated connection (:class:`CoordinatorLock`). Postgres releases the
lock when that connection ends (the process exited, was killed, or lost the database), so a
coordinator is alive iff its lock is held. Another daemon tests it with
``pg_try_advisory_xact_lock`` (:func:`lock_if_gone`) in the very transaction that recovers the
work, so a process that reused the id cannot claim work meanwhile; the test lock ends with
that transaction.

Keys: the first 8 bytes of SHA-256 of ``"ashd-coordinator:" + id`` as a signed bigint (a
namespace of its own; other advisory locks ashd takes use other prefixes or constants).

On SQLite one daemon owns the database: there is no lock and everything is its own.
Blocking throughout.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .errors import StoreError
from .own_connection import KEEPALIVES, advisory_key

log = logging.getLogger(__name__)

NAMESPACE = "ashd-coordinator:"


def lock_key(coordinator_id: str) -> int:
    """The advisory-lock key of a coordinator id (pure)."""
    return advisory_key(NAMESPACE, coordinator_id)


def claimed(column: sa.ColumnElement[Any], owners: Sequence[str | None]) -> sa.ColumnElement[bool]:
    """``column`` is one of ``owners`` (None: no claim recorded, work from before claims)."""
    named = [o for o in owners if o is not None]
    terms: list[sa.ColumnElement[bool]] = [column.in_(named)] if named else []
    if None in owners:
        terms.append(column.is_(None))
    return sa.or_(*terms) if terms else sa.false()


def lock_if_gone(conn: Connection, coordinator_id: str) -> bool:
    """In a write transaction on Postgres: True if ``coordinator_id`` holds no lock (it is gone);
    its key is then locked by this transaction until it ends. False while it lives."""
    return bool(conn.execute(sa.select(sa.func.pg_try_advisory_xact_lock(lock_key(coordinator_id)))).scalar())


class CoordinatorLock:
    """This daemon's liveness lock, on a dedicated autocommit connection. Thread-safe."""

    def __init__(self, connect_params: Mapping[str, Any], coordinator_id: str) -> None:
        """``connect_params``: psycopg's keyword arguments for the database (never logged)."""
        self._params = {**KEEPALIVES, **connect_params}
        self.coordinator_id = coordinator_id
        self._key = lock_key(coordinator_id)
        self._conn: psycopg.Connection[Any] | None = None
        self._guard = threading.Lock()
        self.takes = 0  # how many times the lock was taken (1 + after each lost connection)

    def acquire(self) -> None:
        """Take the lock (at start, before claiming work). Raises StoreError if the database
        cannot be reached or another live process holds this id."""
        with self._guard:
            self._take()

    def check(self) -> bool:
        """Still held? A lost connection is opened again and the lock taken again (logged);
        False (logged) if that fails: until it is back, other daemons may recover our work."""
        with self._guard:
            try:
                if self._conn is not None and not self._conn.closed:
                    self._conn.execute("SELECT 1")
                    return True
            except psycopg.Error:
                pass
            log.error("coordinator %s: the connection holding its liveness lock was lost; taking it again "
                      "(meanwhile other coordinators may have recovered its eval runs and queued prompts)",
                      self.coordinator_id)
            try:
                self._take()
            except StoreError as exc:
                log.error("coordinator %s: liveness lock not taken again: %s", self.coordinator_id, exc)
                return False
            return True

    def release(self) -> None:
        """Close the connection (Postgres releases the lock). Idempotent."""
        with self._guard:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

    def _take(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        try:
            conn = psycopg.connect(**self._params, autocommit=True)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect for the coordinator liveness lock: {exc}") from None
        try:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()
        except psycopg.Error as exc:
            conn.close()
            raise StoreError(f"cannot take the coordinator liveness lock: {exc}") from None
        if not row or not row[0]:
            conn.close()
            raise StoreError(f"coordinator id {self.coordinator_id} is held by another live process")
        self._conn = conn
        self.takes += 1
