"""Analytics aggregates (``ashd/store/analytics.py``) on SQLite and Postgres: tenant scope,
the window, nearest-rank percentiles of turn latency from the stored stream log, eval runs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from ashd.store import Store, format_utc
from ashd.store.analytics import Window, count_eval_runs, eval_run_counts
from ashd.store.schema import messages, sessions, stream_events

T0 = datetime(2027, 1, 1, tzinfo=UTC)


def at(ms: float) -> str:
    return format_utc(T0 + timedelta(milliseconds=ms))


@pytest.fixture
def engine(store: Store, db_url: str) -> Iterator[Engine]:
    eng = sa.create_engine(db_url, poolclass=NullPool)
    yield eng
    eng.dispose()


def _turn(engine: Engine, tenant: str, session_id: str, seq: int, start_ms: float,
          first_ms: float | None, total_ms: float | None) -> int:
    """Stream frames of one turn: session_start at ``start_ms``, the first event
    ``first_ms`` later, ``done`` ``total_ms`` later (None: still running). Returns the next seq."""
    rows = [(seq, "session_start", start_ms)]
    if first_ms is not None:
        rows.append((seq + 1, "text_delta", start_ms + first_ms))
    if total_ms is not None:
        rows.append((seq + len(rows), "done", start_ms + total_ms))
    with engine.begin() as conn:
        conn.execute(sa.insert(stream_events), [
            {"id": f"{session_id[:20]}-{s:015d}", "tenant_id": tenant, "session_id": session_id, "seq": s,
             "event": event, "data": "{}", "created_at": at(ms)} for s, event, ms in rows])
    return seq + len(rows)


def _session(store: Store, engine: Engine, tenant: str, sid: str, status: str, created_ms: float) -> None:
    store.create_session(tenant, sid, "bot", status)
    with engine.begin() as conn:
        conn.execute(sa.update(sessions).where(sessions.c.id == sid).values(created_at=at(created_ms)))


def test_counts_are_per_tenant_and_inside_the_window(store: Store, engine: Engine) -> None:
    store.upsert_agent("acme", "bot", "/a", {})
    store.upsert_agent("acme", "other", "/b", {})
    store.upsert_agent("zeta", "bot", "/c", {})
    _session(store, engine, "acme", "s-old", "ended", 0)
    _session(store, engine, "acme", "s-mid", "active", 5_000)
    _session(store, engine, "acme", "s-mid2", "paused", 6_000)
    _session(store, engine, "zeta", "s-z", "active", 5_000)
    store.append_message("acme", "s-mid", "user", "{}")
    store.append_message("acme", "s-mid", "assistant", "{}")
    store.append_message("acme", "s-mid", "assistant", "{}")
    store.append_message("zeta", "s-z", "user", "{}")
    with engine.begin() as conn:  # the first acme message falls before the window
        first = sa.select(sa.func.min(messages.c.sequence)).where(messages.c.session_id == "s-mid")
        conn.execute(sa.update(messages).where(messages.c.session_id == "s-mid",
                                               messages.c.sequence == first.scalar_subquery())
                     .values(created_at=at(100)))
    store.record_usage("acme", "s-mid", "bot", {"input_tokens": 10, "output_tokens": 4, "cost_usd": 0.5})
    store.record_usage("zeta", "s-z", "bot", {"input_tokens": 999})

    everything = store.analytics_summary("acme", Window())
    assert everything["agents"] == {"total": 2}
    assert everything["sessions"] == {"total": 3, "byStatus": {"ended": 1, "active": 1, "paused": 1}}
    assert everything["messages"] == {"total": 3, "byRole": {"user": 1, "assistant": 2}}
    assert everything["usage"]["totalInputTokens"] == 10 and everything["usage"]["totalCostUsd"] == 0.5
    assert everything["evals"] == {"totalRuns": 0, "byStatus": {}}

    windowed = store.analytics_summary("acme", Window(after=at(1_000), before=at(5_500)))
    assert windowed["agents"] == {"total": 2}  # agents now, whatever the window (as Ash)
    assert windowed["sessions"] == {"total": 1, "byStatus": {"active": 1}}
    assert windowed["messages"] == {"total": 0, "byRole": {}}  # stored "now" (2026), before the window
    late = store.analytics_summary("acme", Window(after=at(1_000)))
    assert late["messages"] == {"total": 0, "byRole": {}}
    early = store.analytics_summary("acme", Window(before=at(1_000)))
    assert early["sessions"] == {"total": 1, "byStatus": {"ended": 1}}
    assert early["messages"] == {"total": 3, "byRole": {"user": 1, "assistant": 2}}
    assert store.analytics_summary("zeta", Window())["sessions"]["total"] == 1
    nobody = store.analytics_summary("nobody", Window())
    assert nobody["agents"] == {"total": 0} and nobody["sessions"] == {"total": 0, "byStatus": {}}
    assert nobody["usage"]["totalInputTokens"] == 0 and nobody["latency"]["turns"] == 0


def test_turn_latency_percentiles_are_nearest_rank(store: Store, engine: Engine) -> None:
    _session(store, engine, "acme", "s-lat", "active", 0)
    _session(store, engine, "zeta", "s-other", "active", 0)
    seq = 1
    # 20 turns of 100..2000 ms, first events after 10..200 ms, one turn every 10 s, shuffled.
    for i in (7, 3, 19, 0, 12, 5, 18, 1, 9, 14, 2, 16, 4, 11, 17, 6, 13, 8, 15, 10):
        seq = _turn(engine, "acme", "s-lat", seq, 10_000 * i, 10 * (i + 1), 100 * (i + 1))
    seq = _turn(engine, "acme", "s-lat", seq, 500_000, 5, None)  # still running: not counted
    _turn(engine, "zeta", "s-other", 1, 0, 1, 99_999)  # another tenant's turn

    latency = store.analytics_summary("acme", Window())["latency"]
    # p50 of 20 values: rank 10 (1000 ms); p95: rank 19 (1900 ms).
    assert latency == {"turns": 20, "turnP50Ms": 1000, "turnP95Ms": 1900,
                       "firstEventP50Ms": 100, "firstEventP95Ms": 190}
    # Turns that started inside the window only: i = 0..4 (starts 0..40 s).
    first_five = store.analytics_summary("acme", Window(before=at(45_000)))["latency"]
    assert first_five == {"turns": 5, "turnP50Ms": 300, "turnP95Ms": 500,
                          "firstEventP50Ms": 30, "firstEventP95Ms": 50}
    one = store.analytics_summary("acme", Window(after=at(185_000), before=at(195_000)))["latency"]
    assert one == {"turns": 1, "turnP50Ms": 2000, "turnP95Ms": 2000,
                   "firstEventP50Ms": 200, "firstEventP95Ms": 200}
    assert store.analytics_summary("zeta", Window())["latency"]["turnP50Ms"] == 99_999
    none = store.analytics_summary("acme", Window(after=at(600_000)))["latency"]
    assert none == {"turns": 0, "turnP50Ms": None, "turnP95Ms": None,
                    "firstEventP50Ms": None, "firstEventP95Ms": None}


def test_eval_runs_count_when_the_table_exists(store: Store, engine: Engine) -> None:
    runs = sa.Table("eval_runs_under_test", sa.MetaData(),
                    sa.Column("id", sa.String(36), primary_key=True), sa.Column("tenant_id", sa.Text()),
                    sa.Column("status", sa.Text()), sa.Column("created_at", sa.Text()))
    runs.create(engine)
    try:
        with engine.begin() as conn:
            conn.execute(sa.insert(runs), [
                {"id": "1", "tenant_id": "acme", "status": "completed", "created_at": at(0)},
                {"id": "2", "tenant_id": "acme", "status": "completed", "created_at": at(2_000)},
                {"id": "3", "tenant_id": "acme", "status": "running", "created_at": at(3_000)},
                {"id": "4", "tenant_id": "zeta", "status": "failed", "created_at": at(3_000)}])
            assert count_eval_runs(conn, runs, "acme", Window()) == {
                "totalRuns": 3, "byStatus": {"completed": 2, "running": 1}}
            assert count_eval_runs(conn, runs, "acme", Window(after=at(1_000))) == {
                "totalRuns": 2, "byStatus": {"completed": 1, "running": 1}}
            # ashd's schema has no eval_runs table (yet): zeros, and no query that would fail.
            assert eval_run_counts(conn, "acme", Window()) == {"totalRuns": 0, "byStatus": {}}
    finally:
        runs.drop(engine)
