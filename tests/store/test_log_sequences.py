"""Log sequences held in memory: one read of the stored maximum per session, and a second
writer on the same database (another ashd) never makes a duplicate or a gap."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa

from ashd.store import Store, StoreError


class _Recording:
    """A driver cursor that notes each statement it runs."""

    def __init__(self, cursor: Any, seen: list[str]) -> None:
        self._cursor = cursor
        self._seen = seen

    def execute(self, sql: str, *args: Any) -> Any:
        self._seen.append(sql)
        return self._cursor.execute(sql, *args)

    def executemany(self, sql: str, *args: Any) -> Any:
        self._seen.append(sql)
        return self._cursor.executemany(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


@pytest.fixture
def statements(store: Store, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """What SQL the store sends: through SQLAlchemy, and on the driver's cursor (raw_writes.py)."""
    seen: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        seen.append(statement)

    raw = store._raw  # the seams
    transaction = raw.transaction

    @contextmanager
    def recorded() -> Iterator[_Recording]:
        with transaction() as cursor:
            yield _Recording(cursor, seen)

    monkeypatch.setattr(raw, "transaction", recorded)
    engine = store._engine
    sa.event.listen(engine, "before_cursor_execute", record)
    yield seen
    sa.event.remove(engine, "before_cursor_execute", record)


def test_the_stored_maximum_is_read_once_per_session_then_kept(store: Store, statements: list[str]) -> None:
    store.create_session("t1", "s1", "qa", "active")
    store.append_log("t1", "s1", [("user", "a")], [("text", "{}")], [(1, "session_start", "{}")])
    assert sum("max(" in s.lower() for s in statements) == 2  # messages and events, first use
    statements.clear()
    store.append_log("t1", "s1", [("assistant", "b")], [("text", "{}")], [(2, "done", "{}")])
    assert not [s for s in statements if "max(" in s.lower() or "for update" in s.lower()]
    assert [m.sequence for m in store.list_messages("t1", "s1")] == [1, 2]
    assert [e.sequence for e in store.list_events("t1", "s1")] == [1, 2]


def test_a_transcripts_stored_maximum_is_read_once_then_kept(store: Store, statements: list[str]) -> None:
    store.create_session("t1", "s1", "qa", "active")
    store.append_transcript("t1", "s1", "", ["a", "b"])
    store.append_transcript("t1", "s1", "sub", ["x"])
    assert sum("max(" in s.lower() for s in statements) == 2  # one per (session, subpath), first use
    statements.clear()
    store.append_transcript("t1", "s1", "", ["c"])
    store.append_transcript("t1", "s1", "sub", ["y"])
    assert not [s for s in statements if "max(" in s.lower() or "for update" in s.lower()]
    assert store.load_transcript("t1", "s1", "") == ["a", "b", "c"]
    assert store.load_transcript("t1", "s1", "sub") == ["x", "y"]


def test_a_second_transcript_writer_never_duplicates_an_entry(store: Store, db_url: str) -> None:
    store.create_session("t1", "s1", "qa", "active")
    other = Store(db_url)
    try:
        for i in range(3):
            store.append_transcript("t1", "s1", "", [f"a{i}"])
            other.append_transcript("t1", "s1", "", [f"b{i}"])
    finally:
        other.close()
    assert store.load_transcript("t1", "s1", "") == [x for i in range(3) for x in (f"a{i}", f"b{i}")]


def test_a_forks_transcript_continues_after_the_copied_entries(store: Store) -> None:
    store.create_session("t1", "s1", "qa", "active")
    store.create_session("t1", "s2", "qa", "active")
    store.append_transcript("t1", "s1", "", ["a", "b", "c"])
    assert store.copy_transcript("t1", "s1", "s2") == 3
    store.append_transcript("t1", "s2", "", ["d"])
    assert store.load_transcript("t1", "s2", "") == ["a", "b", "c", "d"]


def test_a_second_writer_on_the_same_database_never_duplicates_a_sequence(store: Store, db_url: str) -> None:
    store.create_session("t1", "s1", "qa", "active")
    other = Store(db_url)
    try:
        for i in range(4):  # each one's memory goes stale in turn
            store.append_message("t1", "s1", "user", f"a{i}")
            other.append_message("t1", "s1", "user", f"b{i}")
            other.append_events("t1", "s1", [("text", "{}")])
            store.append_events("t1", "s1", [("text", "{}")])
    finally:
        other.close()
    assert [m.sequence for m in store.list_messages("t1", "s1")] == list(range(1, 9))
    assert [m.content for m in store.list_messages("t1", "s1")] == [x for i in range(4) for x in (f"a{i}", f"b{i}")]
    assert [e.sequence for e in store.list_events("t1", "s1")] == list(range(1, 9))


def test_a_failed_append_leaves_no_gap(store: Store) -> None:
    store.create_session("t1", "s1", "qa", "active")
    store.append_message("t1", "s1", "user", "first")
    store.append_log("t1", "s1", [], [], [(1, "session_start", "{}")])
    with pytest.raises(StoreError):
        store.append_log("t1", "s1", [("assistant", "lost")], [], [(1, "session_start", "{}")])
    assert store.append_message("t1", "s1", "user", "next").sequence == 2


def test_an_unknown_session_or_another_tenants_is_refused(store: Store) -> None:
    store.create_session("t1", "s1", "qa", "active")
    store.append_message("t1", "s1", "user", "mine")
    with pytest.raises(StoreError):
        store.append_message("t2", "s1", "user", "intruder")
    with pytest.raises(StoreError):
        store.append_message("t1", "nope", "user", "x")
