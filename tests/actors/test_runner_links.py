"""RunnerLinkSupervisor: one RunnerLinkActor per live runner in a real SQLite registry; the
links themselves behind a recording LinkTable (the WebSocket is tests/runnerlink's)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pykka
import pytest

from ashd.actors.runner_links import RunnerLinkSupervisor
from ashd.actors.timers import Timers
from ashd.runnerlink.table import LinkState
from ashd.store import Store
from ashd.store import runner_queries as rq


class RecordingTable:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def open(self, runner_id: str, host: str, port: int, generation: int | None = None) -> None:
        with self.lock:
            self.calls.append(("open", f"{runner_id}@{host}:{port}"))

    def close(self, runner_id: str) -> None:
        with self.lock:
            self.calls.append(("close", runner_id))

    def state(self, runner_id: str) -> LinkState:
        return LinkState(True, None, 0)


@pytest.fixture(autouse=True)
def stop_actors() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all(timeout=30)


def until(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_one_link_per_live_runner_relinked_on_a_new_generation_and_restarted_after_a_crash(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'ash.db'}")
    store.migrate()
    table = RecordingTable()
    timers = Timers()

    def register(runner_id: str, port: int = 4200) -> None:
        store.write_with(rq.register, runner_id, "127.0.0.1", port, 4, store.now())

    try:
        register("r1")
        register("r2", 4201)
        sup = RunnerLinkSupervisor.start(store, table, 0.05, 30.0, timers=timers)  # type: ignore[arg-type]
        until(lambda: {c for c in table.calls if c[0] == "open"} == {("open", "r1@127.0.0.1:4200"),
                                                                   ("open", "r2@127.0.0.1:4201")})
        views = {v.runner_id: v for v in sup.proxy().views().get(timeout=10)}
        assert set(views) == {"r1", "r2"} and views["r1"].generation == 1 and views["r1"].link.connected

        # r1 registers again (it restarted): a new generation gets a new link.
        table.calls.clear()
        register("r1")
        until(lambda: ("close", "r1") in table.calls and ("open", "r1@127.0.0.1:4200") in table.calls)

        # r2 leaves the registry: its link closes.
        store.write_with(rq.deregister, "r2", "test")
        until(lambda: ("close", "r2") in table.calls)
        assert {v.runner_id for v in sup.proxy().views().get(timeout=10)} == {"r1"}

        # A link actor that died is started again at the next refresh.
        child = sup.proxy().child("r1").get(timeout=10)
        assert child is not None
        table.calls.clear()
        child.stop(timeout=10)
        until(lambda: table.calls[-1:] == [("open", "r1@127.0.0.1:4200")])
        assert sup.proxy().child("r1").get(timeout=10).is_alive()
    finally:
        pykka.ActorRegistry.stop_all(timeout=30)
        timers.stop()
        store.close()
