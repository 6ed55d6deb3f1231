"""Messages and events: gap-free sequences under concurrency, paging, isolation."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import cast

import pytest

from ashd.store import Store, StoreError

WORKERS = 8
PER_WORKER = 25


@pytest.fixture
def session(store: Store) -> str:
    store.create_session("t1", "s1", "qa", "active")
    return "s1"


def test_sequences_start_at_one_per_session(store: Store, session: str) -> None:
    store.create_session("t1", "s2", "qa", "active")
    assert [store.append_message("t1", "s1", "user", str(i)).sequence for i in range(3)] == [
        1, 2, 3
    ]
    assert store.append_message("t1", "s2", "user", "x").sequence == 1
    assert store.append_event("t1", "s1", "message", "{}").sequence == 1


def _hammer(append: object) -> list[tuple[int, int, int]]:
    """Run WORKERS threads appending PER_WORKER items each, all released at once."""
    start = threading.Barrier(WORKERS)

    def work(worker: int) -> list[tuple[int, int, int]]:
        start.wait(timeout=10)
        return [(worker, i, append(worker, i)) for i in range(PER_WORKER)]  # type: ignore[operator]

    with ThreadPoolExecutor(WORKERS) as pool:
        return [item for part in pool.map(work, range(WORKERS)) for item in part]


def test_concurrent_message_appends_have_no_gaps_or_duplicates(
    store: Store, session: str
) -> None:
    done = _hammer(lambda w, i: store.append_message("t1", session, "user", f"{w}:{i}").sequence)
    total = WORKERS * PER_WORKER
    assert sorted(seq for _, _, seq in done) == list(range(1, total + 1))
    stored = store.list_messages("t1", session, limit=total + 10)
    assert [m.sequence for m in stored] == list(range(1, total + 1))
    for worker in range(WORKERS):  # each thread's messages keep their order
        mine = [m.content for m in stored if m.content.startswith(f"{worker}:")]
        assert mine == [f"{worker}:{i}" for i in range(PER_WORKER)]


def test_concurrent_event_batches_stay_contiguous(store: Store, session: str) -> None:
    def append(w: int, i: int) -> int:
        rows = store.append_events("t1", session, [("a", f"{w}:{i}"), ("b", f"{w}:{i}")])
        assert rows[1].sequence == rows[0].sequence + 1
        return rows[0].sequence

    done = _hammer(append)
    total = 2 * WORKERS * PER_WORKER
    assert sorted(seq for _, _, seq in done) == list(range(1, total + 1, 2))
    events = store.list_events("t1", session, limit=total)
    assert [e.sequence for e in events] == list(range(1, total + 1))


def test_append_events_is_all_or_nothing(store: Store, session: str) -> None:
    with pytest.raises(StoreError):
        store.append_events("t1", session, [("ok", "1"), ("bad", cast(str, None))])
    assert store.list_events("t1", session) == []
    assert store.append_events("t1", session, []) == []
    assert store.append_event("t1", session, "ok", "1").sequence == 1


def test_appending_to_another_tenants_session_fails(store: Store, session: str) -> None:
    with pytest.raises(StoreError, match="not found"):
        store.append_message("t2", session, "user", "intruder")
    with pytest.raises(StoreError, match="not found"):
        store.append_event("t1", "no-such-session", "message", "{}")
    assert store.list_messages("t1", session) == []


def test_reads_never_cross_tenants(store: Store, session: str) -> None:
    store.append_message("t1", session, "user", "secret")
    store.append_event("t1", session, "message", "secret")
    assert store.list_messages("t2", session) == []
    assert store.list_events("t2", session) == []


def test_message_paging_with_after_and_limit(store: Store, session: str) -> None:
    for i in range(1, 11):
        store.append_message("t1", session, "user" if i % 2 else "assistant", f"m{i}")
    page = store.list_messages("t1", session, limit=3, after=4)
    assert [(m.sequence, m.content, m.role) for m in page] == [
        (5, "m5", "user"), (6, "m6", "assistant"), (7, "m7", "user")
    ]
    assert [m.sequence for m in store.list_messages("t1", session, after=8)] == [9, 10]
    assert store.list_messages("t1", session, after=10) == []
    assert store.list_messages("t1", session, limit=0) == []
    with pytest.raises(ValueError):
        store.list_messages("t1", session, after=-1)


def test_event_paging_with_type_filter(store: Store, session: str) -> None:
    kinds = ["message", "text_delta", "message", "tool_use", "message", "done"]
    store.append_events("t1", session, [(k, f'{{"n":{i}}}') for i, k in enumerate(kinds)])
    assert [e.sequence for e in store.list_events("t1", session, type="message")] == [1, 3, 5]
    page = store.list_events("t1", session, limit=1, after=1, type="message")
    assert [(e.sequence, e.data) for e in page] == [(3, '{"n":2}')]
    assert [e.type for e in store.list_events("t1", session, limit=2, after=4)] == [
        "message", "done"
    ]
