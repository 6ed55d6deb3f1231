"""SQL for reading the SSE stream log and the SDK transcript mirror, and a fork's copy.

Their appends are on the turn path, in ``raw_writes.py``: stream events carry ids chosen
by the caller (the session's single running turn assigns them in memory before the frame
is sent), so they are plain inserts and the unique constraint catches a second writer (on
Postgres the same transaction NOTIFYs the daemons sharing the database, ``notify.py``);
transcript entries are numbered per (session, subpath) from sequences held in memory, like
``log_queries``.

Functions run inside the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .dialect import new_id
from .schema import stream_events, transcript_entries


@dataclass(frozen=True)
class StreamEventRow:
    seq: int
    event: str
    data: str


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
