"""SQL for ``GET /api/analytics``: one tenant's figures over a time window, as aggregates.

Every figure is computed by the database (counts, sums, percentiles); no rows are loaded
into Python. Functions run inside the caller's transaction and work on SQLite and Postgres.

The window bounds are stored timestamps (``timestamps.py``), both exclusive, compared with
each table's ``created_at``: sessions, messages, usage events, eval runs and turns (by the
turn's ``session_start``) created inside it. ``agents.total`` counts the tenant's agents
now, whatever the window, as Ash does.

Latency comes from the stored SSE log (``stream_events``): a turn runs from its
``session_start`` frame to the next ``done`` of its session; its first event is the frame
right after ``session_start``. Frames carry the time their batch was committed, so the
figures are what a client saw, to within a group commit. A turn cut off by a restart ends
at the ``done`` that ashd appended when it started again. Percentiles are nearest-rank:
the smallest value with at least p% of the values at or below it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from . import schema, usage
from .schema import agents, messages, sessions, stream_events

EVAL_RUNS_TABLE = "eval_runs"


@dataclass(frozen=True)
class Window:
    """Exclusive bounds as stored timestamps; None: unbounded on that side."""

    after: str | None = None
    before: str | None = None

    def bounds(self, column: Any) -> list[ColumnElement[bool]]:
        cond: list[ColumnElement[bool]] = []
        if self.after is not None:
            cond.append(column > self.after)
        if self.before is not None:
            cond.append(column < self.before)
        return cond


def summary(conn: Connection, tenant_id: str, window: Window) -> dict[str, Any]:
    """Ash's analytics object, plus ashd's ``messages`` and ``latency``."""
    session_total, by_status = _counts_by(conn, sessions, sessions.c.status, tenant_id, window)
    message_total, by_role = _counts_by(conn, messages, messages.c.role, tenant_id, window)
    return {
        "agents": {"total": agent_count(conn, tenant_id)},
        "sessions": {"total": session_total, "byStatus": by_status},
        "messages": {"total": message_total, "byRole": by_role},
        "usage": usage.stats(conn, usage.UsageFilter(tenant_id, after=window.after, before=window.before)),
        "latency": turn_latency(conn, tenant_id, window),
        "evals": eval_run_counts(conn, tenant_id, window),
    }


def agent_count(conn: Connection, tenant_id: str) -> int:
    stmt = sa.select(sa.func.count()).select_from(agents).where(agents.c.tenant_id == tenant_id)
    return int(conn.execute(stmt).scalar_one())


def _counts_by(conn: Connection, table: sa.Table, key: Any, tenant_id: str,
               window: Window) -> tuple[int, dict[str, int]]:
    """(total, {key value: count}) of the tenant's rows created inside the window."""
    stmt = (sa.select(key, sa.func.count())
            .where(table.c.tenant_id == tenant_id, *window.bounds(table.c.created_at))
            .group_by(key))
    counts = {str(value): int(n) for value, n in conn.execute(stmt)}
    return sum(counts.values()), counts


def eval_run_counts(conn: Connection, tenant_id: str, window: Window) -> dict[str, Any]:
    """``{totalRuns, byStatus}`` of the tenant's eval runs; zeros while the schema
    (``schema.metadata``, not the database) has no ``eval_runs`` table."""
    table = schema.metadata.tables.get(EVAL_RUNS_TABLE)
    if table is None:
        return {"totalRuns": 0, "byStatus": {}}
    return count_eval_runs(conn, table, tenant_id, window)


def count_eval_runs(conn: Connection, table: sa.Table, tenant_id: str, window: Window) -> dict[str, Any]:
    """``{totalRuns, byStatus}`` from ``table`` (columns ``tenant_id``, ``status``, ``created_at``)."""
    total, by_status = _counts_by(conn, table, table.c.status, tenant_id, window)
    return {"totalRuns": total, "byStatus": by_status}


def turn_latency(conn: Connection, tenant_id: str, window: Window) -> dict[str, Any]:
    """``{turns, turnP50Ms, turnP95Ms, firstEventP50Ms, firstEventP95Ms}`` of the tenant's
    finished turns that started inside the window (the percentiles are None without turns)."""
    start = stream_events.alias("turn_start")
    done = stream_events.alias("turn_done")
    first = stream_events.alias("turn_first")
    done_at = (sa.select(done.c.created_at)
               .where(done.c.session_id == start.c.session_id, done.c.seq > start.c.seq, done.c.event == "done")
               .order_by(done.c.seq).limit(1).scalar_subquery())
    first_at = (sa.select(first.c.created_at)
                .where(first.c.session_id == start.c.session_id, first.c.seq == start.c.seq + 1)
                .scalar_subquery())
    turns = (sa.select(_millis(conn, done_at, start.c.created_at).label("turn_ms"),
                       _millis(conn, first_at, start.c.created_at).label("first_ms"))
             .where(start.c.tenant_id == tenant_id, start.c.event == "session_start",
                    done_at.is_not(None), *window.bounds(start.c.created_at))
             .subquery())
    count, turn_p50, turn_p95 = _percentiles(conn, turns.c.turn_ms, (50, 95))
    _, first_p50, first_p95 = _percentiles(conn, turns.c.first_ms, (50, 95))
    return {"turns": count, "turnP50Ms": turn_p50, "turnP95Ms": turn_p95,
            "firstEventP50Ms": first_p50, "firstEventP95Ms": first_p95}


def _millis(conn: Connection, later: Any, earlier: Any) -> ColumnElement[Any]:
    """Milliseconds between two stored timestamps (NULL if either is NULL), rounded."""
    if conn.dialect.name == "sqlite":
        days = sa.func.julianday(later) - sa.func.julianday(earlier)
        return sa.func.round(days * 86_400_000.0)
    zoned = sa.DateTime(timezone=True)
    seconds = sa.extract("epoch", sa.cast(later, zoned) - sa.cast(earlier, zoned))
    return sa.func.round(seconds * 1000.0)


def _percentiles(conn: Connection, values: Any, percents: tuple[int, ...]) -> tuple[Any, ...]:
    """(count of non-NULL values, then the nearest-rank percentile of each of ``percents``).

    Portable: rank each value with ROW_NUMBER() over the sorted values and keep the one at
    rank ceil(p * n / 100), computed in integer arithmetic as (p * n + 99) // 100.
    """
    ranked = (sa.select(values.label("v"),
                        sa.func.row_number().over(order_by=values).label("rn"),
                        sa.func.count().over().label("n"))
              .where(values.is_not(None))
              .subquery())
    picks = [sa.func.max(sa.case((ranked.c.rn == (p * ranked.c.n + 99) // 100, ranked.c.v)))
             for p in percents]
    row = conn.execute(sa.select(sa.func.count(), *picks).select_from(ranked)).one()
    return (int(row[0]), *(None if v is None else int(v) for v in row[1:]))
