"""Initial schema: agents, sessions, sandboxes, messages, session_events, api_keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.String(36)


def _timestamps(*names: str) -> list[sa.Column[str]]:
    return [sa.Column(name, sa.Text(), nullable=False) for name in names]


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("id", ID, primary_key=True),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("env", sa.Text(), nullable=False),
        sa.Column("config", sa.Text(), nullable=True),
        sa.Column("active_version_id", ID, nullable=True),
        *_timestamps("created_at", "updated_at"),
        sa.UniqueConstraint("tenant_id", "name", name="uq_agents_tenant_name"),
    )
    op.create_table(
        "sessions",
        sa.Column("id", ID, primary_key=True),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("agent_name", sa.Text(), nullable=False),
        sa.Column("sandbox_id", ID, nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("runner_id", sa.Text(), nullable=True),
        sa.Column("parent_session_id", ID, nullable=True),
        sa.Column("model", sa.Text(), nullable=True),
        sa.Column("config", sa.Text(), nullable=True),
        *_timestamps("created_at", "last_active_at"),
    )
    op.create_index("ix_sessions_tenant_agent", "sessions", ["tenant_id", "agent_name"])
    op.create_table(
        "sandboxes",
        sa.Column("id", ID, primary_key=True),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("session_id", ID, nullable=True),
        sa.Column("agent_name", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("workspace_dir", sa.Text(), nullable=False),
        *_timestamps("created_at", "last_used_at"),
    )
    _create_log_table("messages", "role", "content")
    _create_log_table("session_events", "type", "data")
    op.create_table(
        "api_keys",
        sa.Column("id", ID, primary_key=True),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("key_hash", sa.Text(), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        *_timestamps("created_at"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )


def _create_log_table(table: str, kind: str, body: str) -> None:
    """messages and session_events share a shape: a per-session numbered log."""
    op.create_table(
        table,
        sa.Column("id", ID, primary_key=True),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column(
            "session_id",
            ID,
            sa.ForeignKey("sessions.id", ondelete="CASCADE", name=f"fk_{table}_session_id"),
            nullable=False,
        ),
        sa.Column(kind, sa.Text(), nullable=False),
        sa.Column(body, sa.Text(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        *_timestamps("created_at"),
        sa.UniqueConstraint(
            "tenant_id", "session_id", "sequence", name=f"uq_{table}_sequence"
        ),
    )


def downgrade() -> None:
    for table in ("api_keys", "session_events", "messages", "sandboxes"):
        op.drop_table(table)
    op.drop_index("ix_sessions_tenant_agent", table_name="sessions")
    for table in ("sessions", "agents"):
        op.drop_table(table)
