"""SQL for the SSE stream log and the SDK transcript mirror.

Stream events carry ids chosen by the caller (the session's single running turn assigns
them in memory before the frame is sent), so appends are plain inserts; the unique
constraint catches a second writer. On Postgres an append also NOTIFYs the daemons that
share the database (``notify.py``: delivered at commit, the fan-out of live events).
Transcript entries are numbered per (session, subpath) under the session-row lock, like
``log_queries``.

Functions run inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .dialect import new_id
from .errors import StoreError
from .notify import notify_rows
from .schema import sessions, stream_events, transcript_entries


@dataclass(frozen=True)
class StreamEventRow:
    seq: int
    event: str
    data: str


def append_stream(conn: Connection, tenant_id: str, session_id: str,
                  items: Sequence[tuple[int, str, str]], now: str) -> None:
    rows = [{"id": new_id(), "tenant_id": tenant_id, "session_id": session_id, "seq": seq,
             "event": event, "data": data, "created_at": now} for seq, event, data in items]
    if rows:
        conn.execute(sa.insert(stream_events), rows)
        if conn.dialect.name == "postgresql":
            notify_rows(conn, session_id, max(seq for seq, _, _ in items))


def list_stream(conn: Connection, tenant_id: str, session_id: str, after: int, limit: int) -> list[StreamEventRow]:
    t = stream_events.c
    stmt = (sa.select(t.seq, t.event, t.data)
            .where(t.tenant_id == tenant_id, t.session_id == session_id, t.seq > after)
            .order_by(t.seq).limit(limit))
    return [StreamEventRow(r.seq, r.event, r.data) for r in conn.execute(stmt)]


def last_stream(conn: Connection, tenant_id: str, session_id: str) -> StreamEventRow | None:
    t = stream_events.c
    stmt = (sa.select(t.seq, t.event, t.data)
            .where(t.tenant_id == tenant_id, t.session_id == session_id)
            .order_by(t.seq.desc()).limit(1))
    row = conn.execute(stmt).first()
    return StreamEventRow(row.seq, row.event, row.data) if row else None


def append_transcript(conn: Connection, tenant_id: str, session_id: str, subpath: str,
                      entries: Sequence[str], now: str) -> None:
    lock = (sa.select(sessions.c.id)
            .where(sessions.c.id == session_id, sessions.c.tenant_id == tenant_id)
            .with_for_update(key_share=True))
    if conn.execute(lock).first() is None:
        raise StoreError(f"session {session_id} not found for tenant {tenant_id}")
    t = transcript_entries.c
    top = sa.select(sa.func.coalesce(sa.func.max(t.seq), 0)).where(t.session_id == session_id, t.subpath == subpath)
    first = int(conn.execute(top).scalar_one()) + 1
    rows = [{"id": new_id(), "tenant_id": tenant_id, "session_id": session_id, "subpath": subpath,
             "seq": first + i, "entry": entry, "created_at": now} for i, entry in enumerate(entries)]
    if rows:
        conn.execute(sa.insert(transcript_entries), rows)


def load_transcript(conn: Connection, tenant_id: str, session_id: str, subpath: str) -> list[str]:
    t = transcript_entries.c
    stmt = (sa.select(t.entry).where(t.tenant_id == tenant_id, t.session_id == session_id, t.subpath == subpath)
            .order_by(t.seq))
    return [r.entry for r in conn.execute(stmt)]


def transcript_subpaths(conn: Connection, tenant_id: str, session_id: str) -> list[str]:
    t = transcript_entries.c
    stmt = (sa.select(t.subpath).where(t.tenant_id == tenant_id, t.session_id == session_id, t.subpath != "")
            .distinct().order_by(t.subpath))
    return [r.subpath for r in conn.execute(stmt)]


def copy_transcript(conn: Connection, tenant_id: str, source: str, target: str, now: str) -> int:
    """Copy every transcript entry of one session to another (fork). Returns the count."""
    t = transcript_entries.c
    rows = conn.execute(sa.select(t.subpath, t.seq, t.entry)
                        .where(t.tenant_id == tenant_id, t.session_id == source)).all()
    values = [{"id": new_id(), "tenant_id": tenant_id, "session_id": target, "subpath": r.subpath,
               "seq": r.seq, "entry": r.entry, "created_at": now} for r in rows]
    if values:
        conn.execute(sa.insert(transcript_entries), values)
    return len(values)
