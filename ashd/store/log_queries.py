"""SQL for the per-session numbered logs: ``messages`` and ``session_events``.

Sequence rule: each append continues its (tenant, session)'s log from the next free
sequence, which :class:`~.sequences.LogSequences` holds in memory (read from the store on
first use). The caller holds its lock across the transaction, so appenders in this process
are serialized and sequences have no gaps or duplicates; another process's appends are
caught by the unique sequence constraint (see ``sequences.py``).

Functions run inside the caller's write transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .dialect import new_id
from .rows import EventRow, MessageRow
from .schema import messages, session_events
from .sequences import LogSequences


def append_messages(
    conn: Connection, seqs: LogSequences, tenant_id: str, session_id: str, items: Sequence[tuple[str, str]],
    now: str
) -> list[MessageRow]:
    """Append (role, content) pairs. Raises StoreError if the tenant has no such session."""
    first = seqs.take(conn, messages, tenant_id, session_id, len(items))
    rows = [
        MessageRow(new_id(), tenant_id, session_id, role, content, first + i, now)
        for i, (role, content) in enumerate(items)
    ]
    if rows:
        conn.execute(sa.insert(messages), [_values(r) for r in rows])
    return rows


def append_events(
    conn: Connection, seqs: LogSequences, tenant_id: str, session_id: str, items: Sequence[tuple[str, str]],
    now: str
) -> list[EventRow]:
    """Append (type, data) pairs. Raises StoreError if the tenant has no such session."""
    first = seqs.take(conn, session_events, tenant_id, session_id, len(items))
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
