"""SQL for ``queue_items`` (Ash's prompt queue). Functions run inside the caller's transaction.

Statuses: ``pending`` -> ``processing`` -> ``completed`` | ``failed`` (or back to ``pending``
with a ``retry_after`` for a retry); ``pending`` -> ``cancelled``. Claiming is atomic across
processes sharing one database: a conditional UPDATE on ``status = 'pending'`` whose row
count says who won.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .coordinators import claimed
from .dialect import check_ids, new_id
from .schema import queue_items

STATUSES = ("pending", "processing", "completed", "failed", "cancelled")
FINISHED = ("completed", "failed", "cancelled")
CLAIM_ATTEMPTS = 5  # candidates tried per claim when another process wins the race


@dataclass(frozen=True, slots=True)
class QueueItemRow:
    id: str
    tenant_id: str
    session_id: str | None
    agent_name: str
    prompt: str
    status: str
    priority: int
    retry_count: int
    max_retries: int
    error: str | None
    retry_after: str | None
    started_at: str | None
    completed_at: str | None
    created_at: str

    @classmethod
    def from_db(cls, m: Mapping[Any, Any]) -> QueueItemRow:
        return cls(**{f.name: m[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class NewItem:
    tenant_id: str
    agent_name: str
    prompt: str
    session_id: str | None = None
    priority: int = 0
    max_retries: int = 3


def add(conn: Connection, item: NewItem, now: str) -> QueueItemRow:
    check_ids(item.session_id)
    values = {"id": new_id(), "tenant_id": item.tenant_id, "session_id": item.session_id,
              "agent_name": item.agent_name, "prompt": item.prompt, "status": "pending",
              "priority": item.priority, "retry_count": 0, "max_retries": item.max_retries, "error": None,
              "retry_after": None, "started_at": None, "completed_at": None, "created_at": now}
    conn.execute(sa.insert(queue_items).values(**values))
    return QueueItemRow.from_db(values)


def get(conn: Connection, tenant_id: str | None, item_id: str) -> QueueItemRow | None:
    """One item; ``tenant_id`` None means any tenant (the worker)."""
    stmt = sa.select(queue_items).where(queue_items.c.id == item_id)
    if tenant_id is not None:
        stmt = stmt.where(queue_items.c.tenant_id == tenant_id)
    m = conn.execute(stmt).mappings().one_or_none()
    return None if m is None else QueueItemRow.from_db(m)


def list_for(conn: Connection, tenant_id: str, status: str | None, limit: int) -> list[QueueItemRow]:
    t = queue_items.c
    stmt = sa.select(queue_items).where(t.tenant_id == tenant_id)
    if status is not None:
        stmt = stmt.where(t.status == status)
    stmt = stmt.order_by(t.priority.desc(), t.created_at, t.id).limit(limit)
    return [QueueItemRow.from_db(m) for m in conn.execute(stmt).mappings()]


def has_waiting(conn: Connection, tenant_id: str, session_id: str) -> bool:
    """Whether a prompt for this session is pending or being processed."""
    t = queue_items.c
    stmt = sa.select(t.id).where(t.tenant_id == tenant_id, t.session_id == session_id,
                                 t.status.in_(("pending", "processing"))).limit(1)
    return conn.execute(stmt).first() is not None


def stats(conn: Connection, tenant_id: str) -> dict[str, int]:
    t = queue_items.c
    stmt = sa.select(t.status, sa.func.count()).where(t.tenant_id == tenant_id).group_by(t.status)
    counts = {status: 0 for status in STATUSES}
    for status, count in conn.execute(stmt):
        if status in counts:
            counts[status] = int(count)
    return counts


def cancel(conn: Connection, tenant_id: str, item_id: str, now: str) -> bool:
    """pending -> cancelled; False if the item is not pending (or not this tenant's)."""
    t = queue_items.c
    stmt = (sa.update(queue_items)
            .where(t.id == item_id, t.tenant_id == tenant_id, t.status == "pending")
            .values(status="cancelled", completed_at=now))
    return conn.execute(stmt).rowcount == 1


def _due_candidates(now: str, limit: int) -> sa.Select[Any]:
    t = queue_items.c
    due = sa.or_(t.retry_after.is_(None), t.retry_after <= now)
    return (sa.select(t.id).where(t.status == "pending", due)
            .order_by(t.priority.desc(), t.created_at, t.id).limit(limit))


def claim(conn: Connection, now: str, claimed_by: str | None = None) -> QueueItemRow | None:
    """pending -> processing for the highest-priority, oldest item that is due (any tenant).

    Safe with several daemons on one database: only the UPDATE that still sees the item
    pending wins; a loser tries the next candidate. ``claimed_by``: the claiming coordinator
    (its item is requeued only once that one is gone).
    """
    t = queue_items.c
    for item_id in conn.execute(_due_candidates(now, CLAIM_ATTEMPTS)).scalars().all():
        won = conn.execute(sa.update(queue_items).where(t.id == item_id, t.status == "pending")
                           .values(status="processing", started_at=now, claimed_by=claimed_by)).rowcount
        if won == 1:
            return get(conn, None, item_id)
    return None


def any_due(conn: Connection, now: str) -> bool:
    """True if some pending item is due (a read: lets idle workers skip the write lock)."""
    return conn.execute(_due_candidates(now, 1)).first() is not None


def _held(item_id: str, claimed_by: str | None) -> list[sa.ColumnElement[bool]]:
    """The item, still ``processing``, and still ``claimed_by``'s if given (a coordinator whose
    item was recovered while it was cut off changes nothing: ashd/store/coordinators.py)."""
    t = queue_items.c
    held = [t.id == item_id, t.status == "processing"]
    if claimed_by is not None:
        held.append(t.claimed_by == claimed_by)
    return held


def finish(conn: Connection, item_id: str, status: str, now: str, *, error: str | None = None,
           session_id: str | None = None, claimed_by: str | None = None) -> bool:
    """processing -> completed | failed."""
    values: dict[str, Any] = {"status": status, "completed_at": now, "error": error}
    if session_id is not None:
        values["session_id"] = session_id
    stmt = sa.update(queue_items).where(*_held(item_id, claimed_by)).values(**values)
    return conn.execute(stmt).rowcount == 1


def retry_later(conn: Connection, item_id: str, retry_count: int, retry_after: str, error: str,
                session_id: str | None, claimed_by: str | None = None) -> bool:
    """processing -> pending, due again at ``retry_after``."""
    values: dict[str, Any] = {"status": "pending", "retry_count": retry_count, "retry_after": retry_after,
                              "error": error, "started_at": None, "claimed_by": None}
    if session_id is not None:
        values["session_id"] = session_id
    stmt = sa.update(queue_items).where(*_held(item_id, claimed_by)).values(**values)
    return conn.execute(stmt).rowcount == 1


def set_session(conn: Connection, item_id: str, session_id: str) -> None:
    conn.execute(sa.update(queue_items).where(queue_items.c.id == item_id).values(session_id=session_id))


def requeue_processing(conn: Connection, claimed_by: Sequence[str | None] | None = None) -> int:
    """Items a stopped daemon left ``processing`` go back to ``pending``: all of them, or only
    those claimed by one of ``claimed_by`` (None for unclaimed)."""
    t = queue_items.c
    chosen = [t.status == "processing"]
    if claimed_by is not None:
        chosen.append(claimed(t.claimed_by, claimed_by))
    stmt = sa.update(queue_items).where(*chosen).values(status="pending", started_at=None, claimed_by=None)
    return int(conn.execute(stmt).rowcount)


def prune_finished(conn: Connection, before: str, limit: int) -> int:
    """Delete at most ``limit`` items that finished (completed, failed, cancelled) before
    ``before``; how many were deleted. Items pending or processing are never touched."""
    t = queue_items.c
    chosen = conn.execute(sa.select(t.id).where(t.status.in_(FINISHED), t.completed_at < before)
                          .limit(limit)).scalars().all()
    if not chosen:
        return 0
    stmt = sa.delete(queue_items).where(t.id.in_(chosen), t.status.in_(FINISHED))
    return int(conn.execute(stmt).rowcount)
