"""Evals: cases, runs and their results (Ash's eval_cases, eval_runs, eval_results).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_ID = sa.String(36)


def _text(name: str, *, nullable: bool = False) -> sa.Column[str]:
    return sa.Column(name, sa.Text(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "eval_cases",
        sa.Column("id", _ID, primary_key=True),
        _text("tenant_id"), _text("agent_name"), _text("name"), _text("prompt"), _text("scorer"),
        _text("expected"), _text("category", nullable=True), _text("tags"), _text("created_at"),
        _text("updated_at"),
    )
    op.create_index("ix_eval_cases_tenant_agent", "eval_cases", ["tenant_id", "agent_name"])
    op.create_table(
        "eval_runs",
        sa.Column("id", _ID, primary_key=True),
        _text("tenant_id"), _text("agent_name"),
        sa.Column("version_number", sa.Integer(), nullable=True),
        _text("status"), _text("filters"),
        sa.Column("total_cases", sa.Integer(), nullable=False),
        _text("error", nullable=True), _text("created_at"), _text("completed_at", nullable=True),
    )
    op.create_index("ix_eval_runs_tenant_agent", "eval_runs", ["tenant_id", "agent_name"])
    op.create_table(
        "eval_results",
        sa.Column("id", _ID, primary_key=True),
        _text("tenant_id"),
        sa.Column("run_id", _ID, sa.ForeignKey("eval_runs.id", ondelete="CASCADE",
                                               name="fk_eval_results_run_id"), nullable=False),
        sa.Column("case_id", _ID, nullable=False), _text("case_name"),
        sa.Column("session_id", _ID, nullable=True), _text("status"),
        _text("output", nullable=True), sa.Column("score", sa.Float(), nullable=True),
        _text("reason", nullable=True),
        sa.Column("human_score", sa.Integer(), nullable=True), _text("human_notes", nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        _text("created_at"), _text("completed_at", nullable=True),
    )
    op.create_index("ix_eval_results_run", "eval_results", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_eval_results_run", table_name="eval_results")
    op.drop_table("eval_results")
    op.drop_index("ix_eval_runs_tenant_agent", table_name="eval_runs")
    op.drop_table("eval_runs")
    op.drop_index("ix_eval_cases_tenant_agent", table_name="eval_cases")
    op.drop_table("eval_cases")
