"""A turn's group commit (ashd/runtime/turnlog.py): a frame id is reported committed only once
its row can be read back, whether the loop wrote the batch at once (SQLite, writer idle) or the
writer thread did (writer busy); batches keep their order."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ashd.runtime import turnlog
from ashd.runtime.offload import Offload
from ashd.runtime.turnlog import TurnLog
from ashd.store import Store
from ashd.store.usage import UsageFilter


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'ashd.db'}")
    store.migrate()
    store.create_session("t1", "s1", "qa", "active")
    yield store
    store.close()


def _offload(store: Store) -> Offload:
    offload = Offload()
    offload.allow_writes_at_once(store.checkpoint)
    return offload


class Reported:
    """on_commit: each reported id, with the ids the store held at that moment."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.seen: list[tuple[int, list[int]]] = []

    def __call__(self, upto: int) -> None:
        self.seen.append((upto, [r.seq for r in self.store.list_stream_events("t1", "s1")]))


def test_the_loop_writes_a_batch_at_once_when_the_writer_is_idle(store: Store) -> None:
    offload, reported = _offload(store), Reported(store)
    writers: list[str] = []
    at_once = store.append_log_at_once

    def recorded(*args: object, **kwargs: object) -> bool:
        writers.append(threading.current_thread().name)
        return at_once(*args, **kwargs)  # type: ignore[arg-type]

    store.append_log_at_once = recorded  # type: ignore[method-assign]

    async def scenario() -> None:
        log = TurnLog(offload, store, "t1", "s1", reported)
        log.add_message("user", "hi")
        log.add_stream(1, "session_start", "{}")
        await asyncio.sleep(0)  # the batch starts on the next turn of the loop
        assert reported.seen == [(1, [1])]  # committed and readable before it was reported
        log.add_stream(2, "done", "{}")
        await log.flush()

    asyncio.run(scenario())
    offload.shutdown()
    assert reported.seen == [(1, [1]), (2, [1, 2])]
    assert writers == [threading.current_thread().name] * 2  # the loop's own thread
    assert [m.content for m in store.list_messages("t1", "s1")] == ["hi"]


def test_a_batch_goes_to_the_writer_thread_behind_a_busy_write_and_keeps_its_order(store: Store) -> None:
    offload, reported = _offload(store), Reported(store)
    started, release = threading.Event(), threading.Event()

    def slow_write() -> None:  # another write of the daemon's, holding the writer
        started.set()
        release.wait(30)
        store.append_transcript("t1", "s1", "", ["first"])

    async def scenario() -> None:
        busy = asyncio.ensure_future(offload.write(slow_write))
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 30)
        log = TurnLog(offload, store, "t1", "s1", reported)
        log.add_stream(1, "session_start", "{}")
        await asyncio.sleep(0.05)
        assert reported.seen == []  # queued behind the busy write, not written past it
        release.set()
        await busy
        log.add_stream(2, "done", "{}")
        await log.flush()

    asyncio.run(scenario())
    offload.shutdown()
    assert reported.seen[0] == (1, [1])
    assert reported.seen[-1] == (2, [1, 2])
    assert store.load_transcript("t1", "s1") == ["first"]


def test_a_failed_batch_is_reported_by_flush_and_its_frames_still_go_on(store: Store) -> None:
    offload, reported = _offload(store), Reported(store)

    async def scenario() -> None:
        log = TurnLog(offload, store, "t1", "s1", reported)
        log.add_stream(1, "session_start", "{}")
        await log.flush()
        log.add_stream(1, "again", "{}")  # an id the session has: the write fails
        with pytest.raises(Exception, match="conflicts"):
            await log.flush()

    asyncio.run(scenario())
    offload.shutdown()
    assert [upto for upto, _ in reported.seen] == [1, 1]  # the stream is told to go on


def test_queued_usage_rides_with_the_turns_last_commit_not_with_frames_a_client_waits_for(store: Store) -> None:
    offload = _offload(store)
    usage_at_commit: list[tuple[int, int]] = []  # (reported id, usage rows stored then)

    def reported(upto: int) -> None:
        usage_at_commit.append((upto, len(store.list_usage(UsageFilter("t1")))))

    async def scenario() -> None:
        log = TurnLog(offload, store, "t1", "s1", reported)
        log.add_stream(1, "session_start", "{}")
        store.queue_usage("t1", "s1", "qa", {"input_tokens": 5, "message": 1})  # the model call was metered
        await asyncio.sleep(0)
        log.add_stream(2, "text_delta", "{}")
        log.commit_now(urgent=True)  # as a turn's first text delta
        log.hold()
        log.add_stream(3, "done", "{}")
        await log.flush()

    try:
        asyncio.run(scenario())
    finally:
        offload.shutdown()
    assert usage_at_commit == [(1, 0), (2, 0), (3, 2)]


def test_batches_start_at_most_once_per_pace_except_the_urgent_and_the_last(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    pace = 0.2  # long enough that a busy machine's scheduling does not blur the steps below
    monkeypatch.setattr(turnlog, "PACE_S", pace)
    offload, reported = _offload(store), Reported(store)
    at: list[tuple[int, float]] = []  # (reported id, loop time)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()

        def on_commit(upto: int) -> None:
            at.append((upto, loop.time()))
            reported(upto)

        log = TurnLog(offload, store, "t1", "s1", on_commit)
        log.add_stream(1, "session_start", "{}")
        began = loop.time()
        log.commit_now()  # the turn's first batch starts at once
        log.add_stream(2, "message", "{}")
        log.commit_now()  # within the pace: waits for it
        await asyncio.sleep(0)
        log.add_stream(3, "message", "{}")
        await asyncio.sleep(0)
        assert reported.seen == [(1, [1])]
        await asyncio.sleep(pace * 1.5)
        assert [upto for upto, _ in at] == [1, 3]  # 2 and 3 shared the paced batch
        assert at[1][1] - began >= pace * 0.99  # the loop's timers may fire a clock tick early
        log.add_stream(4, "text_delta", "{}")
        log.commit_now(urgent=True)  # the first text delta does not wait
        assert reported.seen[-1] == (4, [1, 2, 3, 4])
        log.add_stream(5, "message", "{}")
        log.add_stream(6, "done", "{}")
        await log.flush()  # nor does the turn's end
        assert loop.time() - at[2][1] < pace / 2

    asyncio.run(scenario())
    offload.shutdown()
    assert [upto for upto, _ in reported.seen] == [1, 3, 4, 6]
