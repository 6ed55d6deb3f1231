"""Session leases: the fencing number of a session's ownership across coordinators.

A coordinator that takes a session's lease (a Postgres advisory lock, ``ashd/store/leases.py``)
draws the next value of this sequence: a number that only rises, across every coordinator,
so a runner can refuse an older owner's orders. SQLite (one daemon) has no leases: nothing.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE SEQUENCE IF NOT EXISTS session_lease_generation")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP SEQUENCE IF EXISTS session_lease_generation")
