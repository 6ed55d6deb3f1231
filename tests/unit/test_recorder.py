"""Where the sandbox services' recorder writes usage rows and notices (ashd/sandbox/recorder.py)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from ashd.metrics import Metrics
from ashd.proxy.meter import Usage
from ashd.sandbox import recorder as recorder_module
from ashd.sandbox.recorder import Recorder


class _Store:
    """The recorder's seam of the store: usage is queued, then written by whoever comes first."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, str]] = []
        self.queued: list[str] = []
        self.written: list[str] = []
        self.asked = 0  # write_queued_usage calls

    def queue_usage(self, tenant: str, session: str, agent: str, values: dict[str, float]) -> None:
        self.queued.append(session)

    def queued_usage(self) -> int:
        return len(self.queued)

    def write_queued_usage(self) -> int:
        self.asked += 1
        rows, self.queued = self.queued, []
        self.written += rows
        if rows:
            self.writes.append(("usage", threading.current_thread().name))
        return len(rows)

    def usage_stats(self, flt: Any) -> dict[str, float]:
        return {"totalCostUsd": 0.25 * self.written.count(flt.session_id)}

    def append_event(self, tenant: str, session: str, kind: str, data: str) -> None:
        self.writes.append((kind, threading.current_thread().name))


def _usage() -> Usage:
    return Usage("claude-sonnet-4-5", input_tokens=3, output_tokens=5)


def test_writes_go_to_the_writer_it_is_given_and_close_writes_what_is_queued() -> None:
    store, writer = _Store(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="the-writer")
    recorder = Recorder(store, None, Metrics(), writer.submit)  # type: ignore[arg-type]
    recorder.usage("t", "s", "a", _usage())
    recorder.notice("t", "s", {"type": "sandbox_oom"})
    recorder.close()
    assert store.writes == [("lifecycle", "the-writer_0"), ("usage", "the-writer_0")]  # the notice at once
    writer.shutdown()


def test_usage_no_commit_took_is_written_by_itself_soon(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recorder_module, "USAGE_WAIT_S", 0.05)
    store = _Store()
    recorder = Recorder(store, None, Metrics())  # type: ignore[arg-type]
    recorder.usage("t", "s", "a", _usage())
    recorder.usage("t", "s", "a", _usage())  # one write for both
    assert store.written == []
    deadline = time.monotonic() + 5
    while len(store.written) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store.written == ["s", "s"] and store.writes == [("usage", "sandbox-events_0")]
    recorder.usage("t", "s", "a", _usage())  # and again for what comes after
    while len(store.written) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store.written == ["s", "s", "s"]
    recorder.close()


def test_one_thread_writes_what_is_due_and_asks_no_writer_when_a_turn_took_the_rows(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recorder_module, "USAGE_WAIT_S", 0.02)
    store = _Store()
    recorder = Recorder(store, None, Metrics())  # type: ignore[arg-type]
    flushers = set()
    for _ in range(5):
        recorder.usage("t", "s", "a", _usage())
        store.queued.clear()  # the turn's last commit took the call's rows
        time.sleep(0.06)  # past its due time
        flushers |= {t for t in threading.enumerate() if t.name == "usage-flush"}
    assert len(flushers) == 1  # one thread all along, not one per call
    assert store.asked == 0 and store.writes == []  # nothing queued: the writer was not asked
    recorder.usage("t", "s", "a", _usage())  # left queued: written when due
    deadline = time.monotonic() + 5
    while not store.written and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store.written == ["s"]
    recorder.close()
    assert [t for t in threading.enumerate() if t.name == "usage-flush"] == []  # close stops it


def test_the_spend_read_includes_what_is_still_queued() -> None:
    store = _Store()
    recorder = Recorder(store, None, Metrics())  # type: ignore[arg-type]
    recorder.usage("t", "s", "a", _usage())
    recorder.usage("t", "other", "a", _usage())
    assert recorder.spent_usd("t", "s") == 0.25
    recorder.close()


def test_without_a_writer_it_keeps_a_thread_of_its_own() -> None:
    store = _Store()
    recorder = Recorder(store, None, Metrics())  # type: ignore[arg-type]
    recorder.usage("t", "s", "a", _usage())
    recorder.close()
    assert store.writes == [("usage", "sandbox-events_0")]


def test_a_write_after_the_writer_stopped_is_dropped_not_raised() -> None:
    writer = ThreadPoolExecutor(max_workers=1)
    writer.shutdown()
    seen: list[Any] = []
    recorder = Recorder(_Store(), lambda *a: seen.append(a), Metrics(), writer.submit)  # type: ignore[arg-type]
    recorder.notice("t", "s", {"type": "egress"})  # ashd stopping: logged, the notice still reaches the turn
    recorder.close()
    assert len(seen) == 1
