"""SQL for ``api_keys``. Functions run inside the caller's transaction."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .dialect import new_id
from .errors import Conflict
from .rows import ApiKeyRow
from .schema import api_keys


def add(conn: Connection, tenant_id: str, key_hash: str, label: str, now: str,
        scopes: str = "admin", key_prefix: str | None = None) -> ApiKeyRow:
    row = ApiKeyRow(new_id(), tenant_id, key_hash, label, now, scopes, key_prefix)
    conn.execute(sa.insert(api_keys).values(
        id=row.id, tenant_id=tenant_id, key_hash=key_hash, label=label, created_at=now, scopes=scopes,
        key_prefix=key_prefix,
    ))
    return row


def find(conn: Connection, key_hash: str) -> ApiKeyRow | None:
    found = conn.execute(sa.select(api_keys).where(api_keys.c.key_hash == key_hash))
    m = found.mappings().one_or_none()
    return None if m is None else ApiKeyRow.from_db(m)


def set_scopes(conn: Connection, key_id: str, scopes: str) -> None:
    conn.execute(sa.update(api_keys).where(api_keys.c.id == key_id).values(scopes=scopes))


def set_prefix(conn: Connection, key_id: str, key_prefix: str) -> None:
    conn.execute(sa.update(api_keys).where(api_keys.c.id == key_id).values(key_prefix=key_prefix))


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


class LastAdminKey(Conflict):
    """Deleting this key would leave its tenant without any admin key."""


def delete(conn: Connection, tenant_id: str, key_id: str, keep_last_admin: bool = False) -> bool:
    """Delete the tenant's key; False if it has none with this id. With ``keep_last_admin``,
    raises LastAdminKey instead of deleting the tenant's only ``admin`` key (the tenant's
    rows are locked first on Postgres, so two concurrent deletes cannot both pass)."""
    if keep_last_admin:
        rows = conn.execute(
            sa.select(api_keys.c.id, api_keys.c.scopes).where(api_keys.c.tenant_id == tenant_id).with_for_update()
        ).all()
        admins = {r.id for r in rows if "admin" in r.scopes.split()}
        if admins == {key_id}:
            raise LastAdminKey(f"key {key_id} is the tenant's last admin key")
    stmt = sa.delete(api_keys).where(api_keys.c.tenant_id == tenant_id, api_keys.c.id == key_id)
    return conn.execute(stmt).rowcount > 0
