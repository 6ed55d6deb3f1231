"""Next free sequence numbers of the per-session logs (``messages``, ``session_events``),
held in memory.

Without it every append locked the session row (``SELECT .. FOR UPDATE``) and read
``MAX(sequence)``: two extra statements per log per batch on the turn path. Now the first
append to a session's log checks that the tenant has the session and reads its highest
sequence once; later appends continue from memory.

Order: callers allocate and insert inside one write transaction while holding :attr:`lock`,
so in this process sequences commit in the order they were taken (no reader paging with
``after`` can skip a row committed late). Another process writing the same session (a second
ashd on the same database) makes this memory stale: the insert then hits the unique
sequence constraint, the caller forgets the session (:meth:`forget`) and retries once,
reading the stored maximum again. Thread-safe.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .errors import StoreError
from .schema import sessions

MAX_SESSIONS = 10_000  # remembered sessions; beyond that the table starts over (a cache only)


class LogSequences:
    def __init__(self) -> None:
        self.lock = threading.RLock()  # held across allocate + insert + commit
        self._next: dict[tuple[str, str, str], int] = {}

    def take(self, conn: Connection, log: sa.Table, tenant_id: str, session_id: str, count: int) -> int:
        """Reserve ``count`` consecutive sequences; returns the first. Hold :attr:`lock`.
        Raises StoreError if the tenant has no such session (checked on first use)."""
        return self.take_with(log.name, tenant_id, session_id, count,
                              lambda: _stored_next(conn, log, tenant_id, session_id))

    def take_with(self, name: str, tenant_id: str, session_id: str, count: int,
                  stored_next: Callable[[], int]) -> int:
        """:meth:`take` for the log ``name`` of the session, whose next free sequence
        ``stored_next()`` reads from the store on first use (inside the caller's transaction;
        it raises StoreError if the tenant has no such session). Hold :attr:`lock`."""
        key = (name, tenant_id, session_id)
        first = self._next.get(key)
        if first is None:
            first = stored_next()
            if len(self._next) >= MAX_SESSIONS:
                self._next.clear()
        self._next[key] = first + count
        return first

    def forget(self, tenant_id: str, session_id: str) -> None:
        """Read the session's sequences from the store again on next use (after a conflict,
        or a rolled-back transaction that had taken some)."""
        with self.lock:
            for key in [k for k in self._next if k[1:] == (tenant_id, session_id)]:
                del self._next[key]


def _stored_next(conn: Connection, log: sa.Table, tenant_id: str, session_id: str) -> int:
    exists = sa.select(sessions.c.id).where(sessions.c.id == session_id, sessions.c.tenant_id == tenant_id)
    if conn.execute(exists).first() is None:
        raise StoreError(f"session {session_id} not found for tenant {tenant_id}")
    top = sa.select(sa.func.coalesce(sa.func.max(log.c.sequence), 0)).where(
        log.c.tenant_id == tenant_id, log.c.session_id == session_id
    )
    return int(conn.execute(top).scalar_one()) + 1
