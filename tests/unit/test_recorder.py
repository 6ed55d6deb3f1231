"""Where the sandbox services' recorder writes usage rows and notices."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ashd.metrics import Metrics
from ashd.proxy.meter import Usage
from ashd.sandbox.services import Recorder


class _Store:
    def __init__(self) -> None:
        self.writes: list[tuple[str, str]] = []

    def record_usage(self, tenant: str, session: str, agent: str, values: dict[str, float]) -> None:
        self.writes.append(("usage", threading.current_thread().name))

    def append_event(self, tenant: str, session: str, kind: str, data: str) -> None:
        self.writes.append((kind, threading.current_thread().name))


def _usage() -> Usage:
    return Usage("claude-sonnet-4-5", input_tokens=3, output_tokens=5)


def test_writes_go_to_the_writer_it_is_given_and_close_waits_for_them() -> None:
    store, writer = _Store(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="the-writer")
    recorder = Recorder(store, None, Metrics(), writer.submit)  # type: ignore[arg-type]
    recorder.usage("t", "s", "a", _usage())
    recorder.notice("t", "s", {"type": "sandbox_oom"})
    recorder.close()
    assert store.writes == [("usage", "the-writer_0"), ("lifecycle", "the-writer_0")]
    writer.shutdown()


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
