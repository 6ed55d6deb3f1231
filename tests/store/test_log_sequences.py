"""Log sequences held in memory: one read of the stored maximum per session, and a second
writer on the same database (another ashd) never makes a duplicate or a gap."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from ashd.store import Store, StoreError


@pytest.fixture
def statements(store: Store) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        seen.append(statement)

    engine = store._engine  # the seam: what SQL the store sends
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
