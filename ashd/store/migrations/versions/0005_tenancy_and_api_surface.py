"""Scoped API keys; credentials, agent versions, attachments and the prompt queue.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_ID = sa.String(36)


def _text(name: str, *, nullable: bool = False) -> sa.Column[str]:
    return sa.Column(name, sa.Text(), nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        # Keys minted before scopes existed could do everything: they stay admin.
        batch.add_column(sa.Column("scopes", sa.Text(), nullable=False, server_default="admin"))
    op.create_table(
        "credentials",
        sa.Column("id", _ID, primary_key=True),
        _text("tenant_id"), _text("type"), _text("encrypted_key"), _text("iv"), _text("auth_tag"),
        _text("salt"), _text("label"),
        sa.Column("active", sa.Boolean(), nullable=False),
        _text("created_at"), _text("last_used_at", nullable=True),
    )
    op.create_index("ix_credentials_tenant", "credentials", ["tenant_id"])
    op.create_table(
        "agent_versions",
        sa.Column("id", _ID, primary_key=True),
        _text("tenant_id"), _text("agent_name"),
        sa.Column("version_number", sa.Integer(), nullable=False),
        _text("name"), _text("system_prompt", nullable=True), _text("release_notes", nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        _text("knowledge_files"), _text("created_by", nullable=True),
        _text("created_at"), _text("updated_at"),
        sa.UniqueConstraint("tenant_id", "agent_name", "version_number", name="uq_agent_versions_number"),
    )
    op.create_table(
        "attachments",
        sa.Column("id", _ID, primary_key=True),
        _text("tenant_id"), _text("message_id"),
        sa.Column("session_id", _ID, sa.ForeignKey("sessions.id", ondelete="CASCADE",
                                                     name="fk_attachments_session_id"), nullable=False),
        _text("filename"), _text("mime_type"),
        sa.Column("size", sa.Integer(), nullable=False),
        _text("storage_path"), _text("created_at"),
    )
    op.create_index("ix_attachments_tenant_session", "attachments", ["tenant_id", "session_id"])
    op.create_table(
        "queue_items",
        sa.Column("id", _ID, primary_key=True),
        _text("tenant_id"),
        sa.Column("session_id", _ID, nullable=True),
        _text("agent_name"), _text("prompt"), _text("status"),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("retry_count", sa.Integer(), nullable=False),
        sa.Column("max_retries", sa.Integer(), nullable=False),
        _text("error", nullable=True), _text("retry_after", nullable=True),
        _text("started_at", nullable=True), _text("completed_at", nullable=True),
        _text("created_at"),
    )
    op.create_index("ix_queue_items_status", "queue_items", ["status", "priority", "created_at"])
    op.create_index("ix_queue_items_tenant", "queue_items", ["tenant_id"])


def downgrade() -> None:
    op.drop_index("ix_queue_items_tenant", table_name="queue_items")
    op.drop_index("ix_queue_items_status", table_name="queue_items")
    op.drop_table("queue_items")
    op.drop_index("ix_attachments_tenant_session", table_name="attachments")
    op.drop_table("attachments")
    op.drop_table("agent_versions")
    op.drop_index("ix_credentials_tenant", table_name="credentials")
    op.drop_table("credentials")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("scopes")
