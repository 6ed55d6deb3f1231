"""SQL for ``sandboxes`` (pool bookkeeping, all tenants).

Functions run inside the caller's transaction.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .dialect import check_ids, upsert_insert
from .rows import SandboxRow
from .schema import sandboxes

_LEAST_RECENTLY_USED_FIRST = (sandboxes.c.last_used_at, sandboxes.c.id)


def upsert(conn: Connection, row: SandboxRow) -> SandboxRow:
    """Insert the row, or overwrite every column except ``id`` and ``created_at``.

    Raises ValueError for over-long ids.
    """
    check_ids(row.id, row.session_id)
    values = {f: getattr(row, f) for f in SandboxRow.__dataclass_fields__}
    ins = upsert_insert(conn, sandboxes).values(**values)
    kept = {"id", "created_at"}
    changes = {c.name: ins.excluded[c.name] for c in sandboxes.c if c.name not in kept}
    stmt = ins.on_conflict_do_update(index_elements=[sandboxes.c.id], set_=changes)
    m = conn.execute(stmt.returning(*sandboxes.c)).mappings().one()
    return SandboxRow.from_db(m)


def get(conn: Connection, sandbox_id: str) -> SandboxRow | None:
    m = conn.execute(sa.select(sandboxes).where(sandboxes.c.id == sandbox_id)).mappings()
    found = m.one_or_none()
    return None if found is None else SandboxRow.from_db(found)


def set_state(conn: Connection, sandbox_id: str, state: str, used_at: str | None) -> bool:
    values = {"state": state} if used_at is None else {"state": state, "last_used_at": used_at}
    stmt = sa.update(sandboxes).where(sandboxes.c.id == sandbox_id).values(**values)
    return conn.execute(stmt).rowcount > 0


def delete(conn: Connection, sandbox_id: str) -> bool:
    return conn.execute(sa.delete(sandboxes).where(sandboxes.c.id == sandbox_id)).rowcount > 0


def list_all(conn: Connection, state: str | None) -> list[SandboxRow]:
    stmt = sa.select(sandboxes).order_by(*_LEAST_RECENTLY_USED_FIRST)
    if state is not None:
        stmt = stmt.where(sandboxes.c.state == state)
    return [SandboxRow.from_db(m) for m in conn.execute(stmt).mappings()]


def session_ids_not_in(conn: Connection, state: str) -> set[str]:
    """Ids of the sessions that have a sandbox in any state but ``state``."""
    stmt = sa.select(sandboxes.c.session_id).where(sandboxes.c.state != state, sandboxes.c.session_id.is_not(None))
    return {session_id for (session_id,) in conn.execute(stmt)}


def mark_all(conn: Connection, state: str) -> int:
    return conn.execute(sa.update(sandboxes).values(state=state)).rowcount
