"""The turn path's appends on the driver's connection (ashd/store/raw_writes.py) keep the
Store's promises: all or nothing per call, the same error classes, writers serialized on
SQLite, and a connection the database dropped is not reused."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from ashd.store import Conflict, Store, StoreError, StoreUnavailable
from ashd.store.store_base import AT_ONCE_MAX_CHARS
from ashd.store.usage import UsageFilter


def test_a_batch_is_all_or_nothing_and_a_duplicate_frame_is_a_conflict(store: Store) -> None:
    store.create_session("t1", "s1", "qa", "active")
    store.append_log("t1", "s1", [("user", "a")], [("text", "{}")], [(1, "session_start", "{}")])
    with pytest.raises(Conflict):
        store.append_log("t1", "s1", [("assistant", "lost")], [("text", "{}")],
                         [(2, "text_delta", "{}"), (1, "session_start", "{}")])
    assert [m.content for m in store.list_messages("t1", "s1")] == ["a"]
    assert len(store.list_events("t1", "s1")) == 1
    assert [r.seq for r in store.list_stream_events("t1", "s1")] == [1]
    store.append_log("t1", "s1", [("assistant", "b")], [("text", "{}")], [(2, "done", "{}")])
    assert [m.sequence for m in store.list_messages("t1", "s1")] == [1, 2]  # no gap after the rollback


def test_frames_of_an_unknown_session_are_refused(store: Store) -> None:
    with pytest.raises(StoreError):
        store.append_log("t1", "nope", [], [], [(1, "session_start", "{}")])
    with pytest.raises(StoreError):
        store.append_transcript("t1", "nope", "", ["x"])


def test_usage_is_recorded_per_known_metric(store: Store) -> None:
    store.create_session("t1", "s1", "qa", "active")
    store.record_usage("t1", "s1", "qa", {"input_tokens": 3, "output_tokens": 5, "bogus": 1})
    events = store.list_usage(UsageFilter("t1", session_id="s1"))
    assert sorted((e["eventType"], e["value"]) for e in events) == [("input_tokens", 3.0), ("output_tokens", 5.0)]


def test_queued_usage_rides_in_the_next_turns_last_commit(store: Store) -> None:
    store.create_session("t1", "s1", "qa", "active")
    store.create_session("t2", "s2", "qa", "active")
    store.queue_usage("t1", "s1", "qa", {"input_tokens": 3, "message": 1})
    assert store.list_usage(UsageFilter("t1")) == []  # queued, not written
    store.append_log("t2", "s2", [], [], [(1, "session_start", "{}")])  # frames a client waits for: not with them
    assert store.list_usage(UsageFilter("t1")) == []
    store.append_log("t2", "s2", [], [], [(2, "done", "{}")], usage=True)  # another tenant's turn ends
    events = store.list_usage(UsageFilter("t1", session_id="s1"))
    assert sorted((e["eventType"], e["value"]) for e in events) == [("input_tokens", 3.0), ("message", 1.0)]
    assert store.list_usage(UsageFilter("t2")) == []  # still the metered session's rows only
    assert store.write_queued_usage() == 0  # nothing left: written once


def test_queued_usage_survives_a_failed_append(store: Store) -> None:
    store.create_session("t1", "s1", "qa", "active")
    store.append_log("t1", "s1", [], [], [(1, "session_start", "{}")])
    store.queue_usage("t1", "s1", "qa", {"output_tokens": 7})
    with pytest.raises(Conflict):  # frame 1 again: rolled back, usage with it
        store.append_log("t1", "s1", [], [], [(1, "session_start", "{}")], usage=True)
    assert store.list_usage(UsageFilter("t1")) == []
    assert store.write_queued_usage() == 1
    assert [(e["eventType"], e["value"]) for e in store.list_usage(UsageFilter("t1"))] == [("output_tokens", 7.0)]


def test_queued_usage_rides_in_a_write_at_once(store: Store) -> None:
    store.create_session("t1", "s1", "qa", "active")
    store.queue_usage("t1", "s1", "qa", {"tool_call": 2})
    if not store.append_log_at_once("t1", "s1", [], [], [(1, "done", "{}")], usage=True):  # Postgres: never at once
        assert store.dialect == "postgresql"
        store.append_log("t1", "s1", [], [], [(1, "done", "{}")], usage=True)
    assert [(e["eventType"], e["value"]) for e in store.list_usage(UsageFilter("t1"))] == [("tool_call", 2.0)]


def test_queued_usage_is_bounded_oldest_dropped() -> None:
    from ashd.store.usage_queue import UsageQueue
    queue = UsageQueue(max_rows=3)
    queue.put([(1,), (2,)])
    taken = queue.take()
    queue.put([(3,), (4,)])
    queue.put_back(taken)  # a failed transaction's rows go back ahead of the newer ones
    assert len(queue) == 3 and queue.take() == [(2,), (3,), (4,)]


def test_concurrent_appends_of_many_sessions_all_land(store: Store) -> None:
    sessions = [f"s{i}" for i in range(6)]
    for sid in sessions:
        store.create_session("t1", sid, "qa", "active")
    failures: list[BaseException] = []

    def write(sid: str) -> None:
        try:
            for seq in range(1, 21):
                store.append_log("t1", sid, [("user", str(seq))], [], [(seq, "text_delta", "{}")])
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(sid,)) for sid in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    for sid in sessions:
        assert [r.seq for r in store.list_stream_events("t1", sid)] == list(range(1, 21))
        assert [m.sequence for m in store.list_messages("t1", sid)] == list(range(1, 21))


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # a server that ends a pooled connection
def test_a_connection_the_database_dropped_is_not_reused(store: Store, db_url: str) -> None:
    store.create_session("t1", "s1", "qa", "active")
    store.append_log("t1", "s1", [], [], [(1, "session_start", "{}")])
    with sa.create_engine(db_url, poolclass=sa.pool.NullPool).begin() as admin:
        ended = admin.execute(sa.text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()")).all()
    assert ended
    store.append_log("t1", "s1", [], [], [(2, "done", "{}")])  # the pool's pre-ping replaced it
    assert [r.seq for r in store.list_stream_events("t1", "s1")] == [1, 2]


def test_a_write_lock_held_past_the_busy_timeout_is_unavailable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ashd.db'}"
    store = Store(url)
    store.migrate()
    store.create_session("t1", "s1", "qa", "active")
    store._engine.pool.dispose()  # new connections wait 50 ms for a lock, not 5 s
    sa.event.listen(store._engine, "connect", lambda dbapi, _: dbapi.execute("PRAGMA busy_timeout=50"))
    blocker = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with blocker.connect() as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            with pytest.raises(StoreUnavailable):
                store.append_log("t1", "s1", [], [], [(1, "session_start", "{}")])
            conn.exec_driver_sql("ROLLBACK")
        store.append_log("t1", "s1", [], [], [(1, "session_start", "{}")])  # the failed one left nothing
        assert [r.seq for r in store.list_stream_events("t1", "s1")] == [1]
    finally:
        blocker.dispose()
        store.close()


# -- writes at once (the event loop's: they never wait) ----------------------------------------

def test_a_write_at_once_commits_and_numbers_on_from_the_queued_writes(store: Store, db_url: str) -> None:
    store.create_session("t1", "s1", "qa", "active")
    store.append_log("t1", "s1", [("user", "a")], [("text", "{}")], [(1, "session_start", "{}")])
    sqlite = db_url.startswith("sqlite")
    assert store.append_log_at_once("t1", "s1", [("assistant", "b")], [("text", "{}")], [(2, "done", "{}")]) is sqlite
    assert store.append_transcript_at_once("t1", "s1", "", ["x"]) is sqlite
    if not sqlite:  # Postgres: never at once (a round trip on the loop); the caller queues it
        store.append_log("t1", "s1", [("assistant", "b")], [("text", "{}")], [(2, "done", "{}")])
        store.append_transcript("t1", "s1", "", ["x"])
    store.append_log("t1", "s1", [("user", "c")], [], [(3, "session_start", "{}")])
    store.append_transcript("t1", "s1", "", ["y"])
    assert [(m.sequence, m.content) for m in store.list_messages("t1", "s1")] == [(1, "a"), (2, "b"), (3, "c")]
    assert [r.seq for r in store.list_stream_events("t1", "s1")] == [1, 2, 3]
    assert store.load_transcript("t1", "s1") == ["x", "y"]
    store.checkpoint()  # SQLite: the WAL the writes at once left; Postgres: nothing


def test_a_write_at_once_refuses_to_wait_for_another_writer_and_leaves_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ashd.db'}"
    store = Store(url)
    store.migrate()
    store.create_session("t1", "s1", "qa", "active")
    blocker = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with blocker.connect() as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # another connection holds SQLite's write lock
            store.queue_usage("t1", "s1", "qa", {"message": 1})
            assert store.append_log_at_once("t1", "s1", [("user", "a")], [], [(1, "session_start", "{}")],
                                            usage=True) is False
            assert store.append_transcript_at_once("t1", "s1", "", ["x"]) is False
            conn.exec_driver_sql("ROLLBACK")
        assert store.list_usage(UsageFilter("t1")) == []
        store.append_log("t1", "s1", [("user", "a")], [], [(1, "session_start", "{}")], usage=True)
        assert len(store.list_usage(UsageFilter("t1"))) == 1  # still queued after the refusal, taken now
        assert store.append_log_at_once("t1", "s1", [("user", "b")], [], [(2, "done", "{}")]) is True
        assert [m.sequence for m in store.list_messages("t1", "s1")] == [1, 2]  # no gap, no duplicate
        assert [r.seq for r in store.list_stream_events("t1", "s1")] == [1, 2]
    finally:
        blocker.dispose()
        store.close()


def test_a_write_at_once_refuses_to_wait_for_another_threads_append(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'ashd.db'}")
    store.migrate()
    store.create_session("t1", "s1", "qa", "active")
    inside, release = threading.Event(), threading.Event()

    def slow_append() -> None:  # holds the sequences' lock as a queued append does
        with store._seqs.lock:
            inside.set()
            release.wait(30)

    thread = threading.Thread(target=slow_append)
    thread.start()
    try:
        assert inside.wait(30)
        assert store.append_log_at_once("t1", "s1", [("user", "a")], [], [(1, "session_start", "{}")]) is False
    finally:
        release.set()
        thread.join()
    assert store.list_messages("t1", "s1") == []
    store.close()


def test_a_write_at_once_that_fails_is_rolled_back_and_takes_no_sequence(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'ashd.db'}")
    store.migrate()
    store.create_session("t1", "s1", "qa", "active")
    store.append_log("t1", "s1", [("user", "a")], [], [(1, "session_start", "{}")])
    # A frame id the session already has: the batch's sequences were taken, then rolled back.
    assert store.append_log_at_once("t1", "s1", [("assistant", "lost")], [], [(1, "session_start", "{}")]) is False
    with pytest.raises(StoreError):  # not a sequence conflict: a real failure is raised
        store.append_log_at_once("t1", "nope", [("user", "x")], [], [])
    assert store.append_log_at_once("t1", "s1", [("assistant", "b")], [], [(2, "done", "{}")]) is True
    assert [(m.sequence, m.content) for m in store.list_messages("t1", "s1")] == [(1, "a"), (2, "b")]
    store.close()


def test_a_write_at_once_refuses_rows_too_large_to_hold_the_loop_for(tmp_path: Path) -> None:
    # An agent's output decides the size: a large batch goes to the writer thread instead.
    store = Store(f"sqlite:///{tmp_path / 'ashd.db'}")
    store.migrate()
    store.create_session("t1", "s1", "qa", "active")
    big = "x" * (AT_ONCE_MAX_CHARS + 1)
    assert store.append_log_at_once("t1", "s1", [("assistant", big)], [], []) is False
    assert store.append_log_at_once("t1", "s1", [], [], [(1, "message", big)]) is False
    assert store.append_transcript_at_once("t1", "s1", "", [big]) is False
    assert store.list_messages("t1", "s1") == [] and store.load_transcript("t1", "s1") == []
    assert store.append_log_at_once("t1", "s1", [("assistant", big[:AT_ONCE_MAX_CHARS])], [], []) is True
    store.append_log("t1", "s1", [("assistant", big)], [], [])
    assert [len(m.content) for m in store.list_messages("t1", "s1")] == [AT_ONCE_MAX_CHARS, AT_ONCE_MAX_CHARS + 1]
    store.close()
