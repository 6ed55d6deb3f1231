"""Usage events metered by the model proxy (Ash's usage_events).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_events",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("agent_name", sa.Text(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("created_at", sa.Text(), nullable=False),
    )
    op.create_index("ix_usage_events_tenant_session", "usage_events", ["tenant_id", "session_id"])


def downgrade() -> None:
    op.drop_index("ix_usage_events_tenant_session", table_name="usage_events")
    op.drop_table("usage_events")
