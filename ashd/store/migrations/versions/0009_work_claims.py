"""Work claims: which coordinator runs an eval run or a queued prompt (docs/scale-out.md).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("eval_runs") as batch:
        batch.add_column(sa.Column("claimed_by", sa.Text(), nullable=True))
    with op.batch_alter_table("queue_items") as batch:
        batch.add_column(sa.Column("claimed_by", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("queue_items") as batch:
        batch.drop_column("claimed_by")
    with op.batch_alter_table("eval_runs") as batch:
        batch.drop_column("claimed_by")
