"""SQL for ``attachments``. Functions run inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .schema import attachments


@dataclass(frozen=True, slots=True)
class AttachmentRow:
    id: str
    tenant_id: str
    session_id: str
    message_id: str  # "" when the attachment belongs to no message yet
    filename: str
    mime_type: str
    size: int
    storage_path: str
    created_at: str

    @classmethod
    def from_db(cls, m: Mapping[Any, Any]) -> AttachmentRow:
        return cls(**dict(m))


def insert(conn: Connection, row: AttachmentRow) -> AttachmentRow:
    conn.execute(sa.insert(attachments).values(
        id=row.id, tenant_id=row.tenant_id, session_id=row.session_id, message_id=row.message_id,
        filename=row.filename, mime_type=row.mime_type, size=row.size, storage_path=row.storage_path,
        created_at=row.created_at,
    ))
    return row


def get(conn: Connection, tenant_id: str, attachment_id: str) -> AttachmentRow | None:
    stmt = sa.select(attachments).where(attachments.c.tenant_id == tenant_id, attachments.c.id == attachment_id)
    m = conn.execute(stmt).mappings().one_or_none()
    return None if m is None else AttachmentRow.from_db(m)


def list_for(conn: Connection, tenant_id: str, session_id: str) -> list[AttachmentRow]:
    stmt = (
        sa.select(attachments)
        .where(attachments.c.tenant_id == tenant_id, attachments.c.session_id == session_id)
        .order_by(attachments.c.created_at, attachments.c.id)
    )
    return [AttachmentRow.from_db(m) for m in conn.execute(stmt).mappings()]


def delete(conn: Connection, tenant_id: str, attachment_id: str) -> bool:
    stmt = sa.delete(attachments).where(attachments.c.tenant_id == tenant_id, attachments.c.id == attachment_id)
    return conn.execute(stmt).rowcount > 0
