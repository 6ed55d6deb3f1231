"""SQL for ``credentials`` (sealed upstream model keys). Functions run inside the caller's
transaction; every query is scoped to one tenant."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .schema import credentials


@dataclass(frozen=True, slots=True)
class CredentialRow:
    """A stored credential; the four sealed columns are opaque base64 (see ashd/credentials.py)."""

    id: str
    tenant_id: str
    type: str
    encrypted_key: str
    iv: str
    auth_tag: str
    salt: str
    label: str
    active: bool
    created_at: str
    last_used_at: str | None

    @classmethod
    def from_db(cls, m: Mapping[Any, Any]) -> CredentialRow:
        fields = dict(m)
        fields["active"] = bool(fields["active"])
        return cls(**fields)

    def __repr__(self) -> str:  # never the sealed parts in a log line
        return f"CredentialRow(id={self.id!r}, tenant_id={self.tenant_id!r}, type={self.type!r})"


def insert(conn: Connection, row: CredentialRow) -> None:
    values = {c.name: getattr(row, c.name) for c in credentials.columns}
    conn.execute(sa.insert(credentials).values(**values))


def get(conn: Connection, tenant_id: str, credential_id: str) -> CredentialRow | None:
    stmt = sa.select(credentials).where(credentials.c.tenant_id == tenant_id, credentials.c.id == credential_id)
    m = conn.execute(stmt).mappings().one_or_none()
    return None if m is None else CredentialRow.from_db(m)


def list_for(conn: Connection, tenant_id: str) -> list[CredentialRow]:
    stmt = (sa.select(credentials).where(credentials.c.tenant_id == tenant_id)
            .order_by(credentials.c.created_at, credentials.c.id))
    return [CredentialRow.from_db(m) for m in conn.execute(stmt).mappings()]


def delete(conn: Connection, tenant_id: str, credential_id: str) -> bool:
    stmt = sa.delete(credentials).where(credentials.c.tenant_id == tenant_id, credentials.c.id == credential_id)
    return conn.execute(stmt).rowcount > 0


def touch(conn: Connection, tenant_id: str, credential_id: str, now: str) -> None:
    conn.execute(sa.update(credentials)
                 .where(credentials.c.tenant_id == tenant_id, credentials.c.id == credential_id)
                 .values(last_used_at=now))
