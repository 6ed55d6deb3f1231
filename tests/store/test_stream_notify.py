"""The fan-out's NOTIFY and its listener on a real Postgres (issue #11 item 5).

An append of stream events NOTIFYs at commit, never before its rows are readable and never
for a rolled-back batch; the listener hears it on its own thread, and after its connection is
killed it connects again with backoff and says so (``on_listening``), so streams re-read.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from ashd.store import Store, raw_writes
from ashd.store.notify import StreamListener, parse_payload
from ashd.store.sequences import LogSequences

WAIT_S = 30.0


@pytest.fixture
def db_url(pg_database_url: str) -> str:
    return pg_database_url  # Postgres only: SQLite has one daemon per database, nothing to fan out


class Heard:
    """What a listener reported, with the rows the store showed at that moment."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.rows: queue.Queue[tuple[str, int, int]] = queue.Queue()  # (session, seq, highest readable id)
        self.listening = threading.Semaphore(0)

    def on_rows(self, session_id: str, seq: int) -> None:
        last = self._store.last_stream_event("t1", session_id)
        self.rows.put((session_id, seq, last.seq if last else 0))

    def on_listening(self) -> None:
        self.listening.release()

    def next(self) -> tuple[str, int]:
        """The next (session, id) heard; its rows were readable when it was heard."""
        session_id, seq, readable = self.rows.get(timeout=WAIT_S)
        assert readable >= seq
        return session_id, seq


@pytest.fixture
def heard(store: Store) -> Iterator[tuple[Heard, StreamListener]]:
    store.create_session("t1", "s1", "qa", "active")
    heard = Heard(store)
    listener = store.stream_listener(heard.on_rows, heard.on_listening)
    assert listener is not None
    listener.start()
    assert heard.listening.acquire(timeout=WAIT_S)
    yield heard, listener
    listener.stop()


def test_a_committed_batch_is_heard_with_its_highest_id_and_its_rows_readable(
        store: Store, heard: tuple[Heard, StreamListener]) -> None:
    got, _ = heard
    store.append_log("t1", "s1", [("user", "{}")], [], [(1, "session_start", "{}"), (2, "text_delta", "{}")])
    store.append_log("t1", "s1", [], [], [(3, "done", "{}")])
    assert got.next() == ("s1", 2)  # its rows readable when heard: NOTIFY is delivered at commit
    assert got.next() == ("s1", 3)
    store.append_log("t1", "s1", [("user", "{}")], [], [])  # no stream events: nothing to tell
    with pytest.raises(queue.Empty):
        got.rows.get(timeout=1.0)


def test_a_rolled_back_batch_is_never_heard(store: Store, heard: tuple[Heard, StreamListener]) -> None:
    got, _ = heard

    def batch(items: list[tuple[int, str, str]], *, fail: bool) -> None:
        """The turn path's append (rows, then its NOTIFY) in a transaction that fails after it or not."""
        with store._raw.transaction() as cursor:
            raw_writes.append_log(store._raw, cursor, LogSequences(), "t1", "s1", [], [], items, store.now())
            if fail:
                raise RuntimeError("rolled back after the NOTIFY")

    with pytest.raises(RuntimeError):
        batch([(1, "session_start", "{}")], fail=True)
    with pytest.raises(queue.Empty):
        got.rows.get(timeout=1.0)
    batch([(7, "session_start", "{}"), (8, "done", "{}")], fail=False)
    assert got.next() == ("s1", 8)


def test_a_killed_listening_connection_comes_back_and_says_so(
        store: Store, heard: tuple[Heard, StreamListener], pg_database_url: str) -> None:
    got, listener = heard
    pid = listener.backend_pid
    assert pid is not None and listener.connects == 1
    engine = sa.create_engine(pg_database_url)
    try:
        with engine.begin() as conn:
            assert conn.execute(sa.select(sa.func.pg_terminate_backend(pid))).scalar_one()
    finally:
        engine.dispose()
    assert got.listening.acquire(timeout=WAIT_S)  # LISTENs again: streams re-read what it missed
    assert listener.connects == 2 and listener.backend_pid not in (None, pid)
    store.append_log("t1", "s1", [], [], [(1, "session_start", "{}")])
    assert got.next() == ("s1", 1)


def test_sqlite_has_no_listener(tmp_path: object) -> None:
    store = Store(f"sqlite:///{tmp_path}/ashd.db")
    try:
        assert store.stream_listener(lambda s, n: None, lambda: None) is None
    finally:
        store.close()


def test_payloads_not_of_ours_are_ignored() -> None:
    assert parse_payload("abc 12") == ("abc", 12)
    assert parse_payload("abc") is None and parse_payload("abc x") is None and parse_payload(" 3") is None


def test_the_listener_stops_promptly(store: Store) -> None:
    listener = store.stream_listener(lambda s, n: None, lambda: None)
    assert listener is not None
    listener.start()
    assert listener.running
    listener.stop()
    assert not listener.running
