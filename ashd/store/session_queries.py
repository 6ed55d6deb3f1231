"""SQL for ``sessions``. Functions run inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .dialect import check_ids
from .rows import SessionRow, encode_json
from .schema import sessions

_NEWEST_FIRST = (sessions.c.created_at.desc(), sessions.c.id.desc())


def get(conn: Connection, tenant_id: str | None, session_id: str) -> SessionRow | None:
    """The session, restricted to ``tenant_id`` unless it is None (internal use)."""
    stmt = sa.select(sessions).where(sessions.c.id == session_id)
    if tenant_id is not None:
        stmt = stmt.where(sessions.c.tenant_id == tenant_id)
    m = conn.execute(stmt).mappings().one_or_none()
    return None if m is None else SessionRow.from_db(m)


def list_for(
    conn: Connection, tenant_id: str, agent_name: str | None, status: str | None
) -> list[SessionRow]:
    stmt = sa.select(sessions).where(sessions.c.tenant_id == tenant_id)
    if agent_name is not None:
        stmt = stmt.where(sessions.c.agent_name == agent_name)
    if status is not None:
        stmt = stmt.where(sessions.c.status == status)
    return [SessionRow.from_db(m) for m in conn.execute(stmt.order_by(*_NEWEST_FIRST)).mappings()]


def list_by_status(conn: Connection, statuses: Iterable[str]) -> list[SessionRow]:
    wanted = list(statuses)
    if not wanted:
        return []
    stmt = sa.select(sessions).where(sessions.c.status.in_(wanted)).order_by(*_NEWEST_FIRST)
    return [SessionRow.from_db(m) for m in conn.execute(stmt).mappings()]


def count_with_status(conn: Connection, status: str) -> int:
    """Sessions of every tenant in ``status``."""
    stmt = sa.select(sa.func.count()).select_from(sessions).where(sessions.c.status == status)
    return int(conn.execute(stmt).scalar_one())


def update(
    conn: Connection, tenant_id: str, session_id: str, changes: Mapping[str, Any]
) -> SessionRow | None:
    """Apply ``changes`` (column -> value; ``config`` as a dict) and return the row."""
    if not changes:
        return get(conn, tenant_id, session_id)
    values = dict(changes)
    check_ids(values.get("sandbox_id"))
    if "config" in values:
        values["config"] = encode_json(values["config"])
    stmt = (
        sa.update(sessions)
        .where(sessions.c.tenant_id == tenant_id, sessions.c.id == session_id)
        .values(**values)
        .returning(*sessions.c)
    )
    m = conn.execute(stmt).mappings().one_or_none()
    return None if m is None else SessionRow.from_db(m)


def delete(conn: Connection, tenant_id: str, session_id: str) -> bool:
    result = conn.execute(
        sa.delete(sessions).where(sessions.c.tenant_id == tenant_id, sessions.c.id == session_id)
    )
    return bool(result.rowcount)
