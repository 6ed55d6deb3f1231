"""Stream events (SSE replay) and transcript entries (conversation persistence).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = sa.String(36)


def _session_fk(table: str) -> sa.Column[str]:
    fk = sa.ForeignKey("sessions.id", ondelete="CASCADE", name=f"fk_{table}_session_id")
    return sa.Column("session_id", ID, fk, nullable=False)


def upgrade() -> None:
    op.create_table(
        "stream_events",
        sa.Column("id", ID, primary_key=True),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        _session_fk("stream_events"),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.UniqueConstraint("session_id", "seq", name="uq_stream_events_seq"),
    )
    op.create_table(
        "transcript_entries",
        sa.Column("id", ID, primary_key=True),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        _session_fk("transcript_entries"),
        sa.Column("subpath", sa.Text(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("entry", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.UniqueConstraint("session_id", "subpath", "seq", name="uq_transcript_entries_seq"),
    )


def downgrade() -> None:
    op.drop_table("transcript_entries")
    op.drop_table("stream_events")
