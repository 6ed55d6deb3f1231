"""SQL for the per-session numbered logs: ``messages`` and ``session_events``.

Sequence rule: each append takes ``MAX(sequence) + 1`` for its (tenant, session).
Appends first lock the session row (``SELECT .. FOR NO KEY UPDATE`` on Postgres; on
SQLite the write transaction is ``BEGIN IMMEDIATE``), so concurrent appenders to one
session are serialized and sequences have no gaps or duplicates. Appenders to
different sessions do not wait for each other on Postgres.

Functions run inside the caller's write transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .dialect import new_id
from .errors import StoreError
from .rows import EventRow, MessageRow
from .schema import messages, session_events, sessions


def append_messages(
    conn: Connection, tenant_id: str, session_id: str, items: Sequence[tuple[str, str]], now: str
) -> list[MessageRow]:
    """Append (role, content) pairs. Raises StoreError if the tenant has no such session."""
    first = _reserve(conn, messages, tenant_id, session_id)
    rows = [
        MessageRow(new_id(), tenant_id, session_id, role, content, first + i, now)
        for i, (role, content) in enumerate(items)
    ]
    if rows:
        conn.execute(sa.insert(messages), [_values(r) for r in rows])
    return rows


def append_events(
    conn: Connection, tenant_id: str, session_id: str, items: Sequence[tuple[str, str]], now: str
) -> list[EventRow]:
    """Append (type, data) pairs. Raises StoreError if the tenant has no such session."""
    first = _reserve(conn, session_events, tenant_id, session_id)
    rows = [
        EventRow(new_id(), tenant_id, session_id, kind, data, first + i, now)
        for i, (kind, data) in enumerate(items)
    ]
    if rows:
        conn.execute(sa.insert(session_events), [_values(r) for r in rows])
    return rows


def list_messages(
    conn: Connection, tenant_id: str, session_id: str, limit: int, after: int
) -> list[MessageRow]:
    stmt = _page(messages, tenant_id, session_id, limit, after)
    return [MessageRow.from_db(m) for m in conn.execute(stmt).mappings()]


def list_events(
    conn: Connection, tenant_id: str, session_id: str, limit: int, after: int, kind: str | None
) -> list[EventRow]:
    stmt = _page(session_events, tenant_id, session_id, limit, after)
    if kind is not None:
        stmt = stmt.where(session_events.c.type == kind)
    return [EventRow.from_db(m) for m in conn.execute(stmt).mappings()]


def _reserve(conn: Connection, log: sa.Table, tenant_id: str, session_id: str) -> int:
    """Lock the session row and return the next free sequence number."""
    lock = (
        sa.select(sessions.c.id)
        .where(sessions.c.id == session_id, sessions.c.tenant_id == tenant_id)
        .with_for_update(key_share=True)
    )
    if conn.execute(lock).first() is None:
        raise StoreError(f"session {session_id} not found for tenant {tenant_id}")
    top = sa.select(sa.func.coalesce(sa.func.max(log.c.sequence), 0)).where(
        log.c.tenant_id == tenant_id, log.c.session_id == session_id
    )
    return int(conn.execute(top).scalar_one()) + 1


def _page(log: sa.Table, tenant_id: str, session_id: str, limit: int, after: int) -> sa.Select:
    if limit < 0 or after < 0:
        raise ValueError(f"limit and after must be >= 0 (got limit={limit}, after={after})")
    return (
        sa.select(log)
        .where(log.c.tenant_id == tenant_id, log.c.session_id == session_id)
        .where(log.c.sequence > after)
        .order_by(log.c.sequence)
        .limit(limit)
    )


def _values(row: MessageRow | EventRow) -> dict[str, object]:
    return {f: getattr(row, f) for f in type(row).__dataclass_fields__}
