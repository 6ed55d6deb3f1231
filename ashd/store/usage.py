"""Usage events metered by the model proxy (Ash's ``usage_events`` table and its queries).

One row per metric per model request, as Ash stores them: ``event_type`` is one of
:data:`EVENT_TYPES`, ``value`` the amount (inserted by ``raw_writes.record_usage``). Functions run
inside the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .schema import metadata

EVENT_TYPES = ("input_tokens", "output_tokens", "cache_creation_tokens", "cache_read_tokens",
               "tool_call", "message", "cost_usd")
_STATS = {"input_tokens": "totalInputTokens", "output_tokens": "totalOutputTokens",
          "cache_creation_tokens": "totalCacheCreationTokens", "cache_read_tokens": "totalCacheReadTokens",
          "tool_call": "totalToolCalls", "message": "totalMessages", "cost_usd": "totalCostUsd"}

usage_events = sa.Table(
    "usage_events",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.Text(), nullable=False),
    sa.Column("session_id", sa.String(36), nullable=False),
    sa.Column("agent_name", sa.Text(), nullable=False),
    sa.Column("event_type", sa.Text(), nullable=False),
    sa.Column("value", sa.Float(), nullable=False),
    sa.Column("created_at", sa.Text(), nullable=False),
    sa.Index("ix_usage_events_tenant_session", "tenant_id", "session_id"),
)


@dataclass(frozen=True)
class UsageFilter:
    tenant_id: str
    session_id: str | None = None
    agent_name: str | None = None
    after: str | None = None  # created_at bounds (stored timestamp strings)
    before: str | None = None
    limit: int = 100


def _where(f: UsageFilter) -> list[Any]:
    t = usage_events.c
    cond = [t.tenant_id == f.tenant_id]
    if f.session_id:
        cond.append(t.session_id == f.session_id)
    if f.agent_name:
        cond.append(t.agent_name == f.agent_name)
    if f.after:
        cond.append(t.created_at > f.after)
    if f.before:
        cond.append(t.created_at < f.before)
    return cond


def list_events(conn: Connection, f: UsageFilter) -> list[dict[str, Any]]:
    """Ash's usage event objects, newest first."""
    t = usage_events.c
    query = sa.select(usage_events).where(*_where(f)).order_by(t.created_at.desc(), t.id).limit(f.limit)
    return [{"id": r.id, "tenantId": r.tenant_id, "sessionId": r.session_id, "agentName": r.agent_name,
             "eventType": r.event_type, "value": r.value, "createdAt": r.created_at}
            for r in conn.execute(query)]


def stats(conn: Connection, f: UsageFilter) -> dict[str, float]:
    """Ash's totals (plus ``totalCostUsd``); ``totalComputeSeconds`` is not metered (0)."""
    t = usage_events.c
    query = sa.select(t.event_type, sa.func.sum(t.value)).where(*_where(f)).group_by(t.event_type)
    out: dict[str, float] = {name: 0 for name in _STATS.values()}
    out["totalComputeSeconds"] = 0
    for kind, total in conn.execute(query):
        if kind in _STATS:
            out[_STATS[kind]] = float(total) if kind == "cost_usd" else int(total)
    return out
