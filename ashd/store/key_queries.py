"""SQL for ``api_keys``. Functions run inside the caller's transaction."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .dialect import new_id
from .rows import ApiKeyRow
from .schema import api_keys


def add(conn: Connection, tenant_id: str, key_hash: str, label: str, now: str) -> ApiKeyRow:
    row = ApiKeyRow(new_id(), tenant_id, key_hash, label, now)
    conn.execute(sa.insert(api_keys).values(
        id=row.id, tenant_id=tenant_id, key_hash=key_hash, label=label, created_at=now
    ))
    return row


def find(conn: Connection, key_hash: str) -> ApiKeyRow | None:
    found = conn.execute(sa.select(api_keys).where(api_keys.c.key_hash == key_hash))
    m = found.mappings().one_or_none()
    return None if m is None else ApiKeyRow.from_db(m)


def count(conn: Connection, tenant_id: str | None) -> int:
    stmt = sa.select(sa.func.count()).select_from(api_keys)
    if tenant_id is not None:
        stmt = stmt.where(api_keys.c.tenant_id == tenant_id)
    return int(conn.execute(stmt).scalar_one())


def list_for(conn: Connection, tenant_id: str) -> list[ApiKeyRow]:
    stmt = (
        sa.select(api_keys)
        .where(api_keys.c.tenant_id == tenant_id)
        .order_by(api_keys.c.created_at, api_keys.c.id)
    )
    return [ApiKeyRow.from_db(m) for m in conn.execute(stmt).mappings()]


def delete(conn: Connection, tenant_id: str, key_id: str) -> bool:
    stmt = sa.delete(api_keys).where(api_keys.c.tenant_id == tenant_id, api_keys.c.id == key_id)
    return conn.execute(stmt).rowcount > 0
