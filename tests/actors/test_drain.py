"""RunnerDrain (ashd/actors/drain.py): which sandboxes it hands the pool to move, and what it
says, over a real SQLite registry; the launcher's placements, the links and the pool are
recorded stand-ins (the whole path with real processes: tests/e2e/test_drain.py)."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator
from pathlib import Path

import pytest

from ashd.actors.drain import RunnerDrain
from ashd.store import Store
from ashd.store import runner_queries as rq


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(f"sqlite:///{tmp_path / 'registry.db'}")
    opened.migrate()
    for runner in ("r1", "r2"):
        opened.write_with(rq.register, runner, "127.0.0.1", 4200, 4, opened.now())
    yield opened
    opened.close()


class Stage:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.hosted = [("s1", "r1"), ("s2", "r1"), ("s3", "r2")]
        self.linked = {"r1", "r2"}
        self.moves: list[tuple[list[str], str]] = []
        self.drain = RunnerDrain(store, 30, self.hosted_on, lambda runner: runner in self.linked,
                                 lambda ids, reason: self.moves.append((sorted(ids), reason)))

    def hosted_on(self, runners: Collection[str]) -> list[tuple[str, str]]:
        return [(sandbox, runner) for sandbox, runner in self.hosted if runner in runners]

    def look(self) -> None:
        draining = {r.id for r in self.store.read_with(rq.list_all) if r.draining}
        self.drain.look(draining)


def test_a_draining_runners_sandboxes_go_to_the_pool_while_another_runner_takes_sessions(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "ashd.actors.drain")
    stage = Stage(store)
    stage.look()
    assert stage.moves == []  # nothing drains

    store.write_with(rq.set_draining, "r1", True)
    stage.look()
    stage.look()  # a busy one is handed again at every look (the pool skips what is mid-turn)
    assert stage.moves == [(["s1", "s2"], "runner r1 drains")] * 2
    assert caplog.text.count("runner r1 drains: moving its 2 session(s)") == 1  # said once

    # No other runner takes sessions (r2 drains too, or is not linked from here): nothing moves, said once.
    stage.moves.clear()
    store.write_with(rq.set_draining, "r2", True)
    stage.look()
    stage.look()
    assert stage.moves == []
    assert caplog.text.count("runner r1 drains, but no other runner takes sessions") == 1
    store.write_with(rq.set_draining, "r2", False)
    stage.linked = {"r1"}
    stage.look()
    assert stage.moves == []
    stage.linked = {"r1", "r2"}
    stage.look()
    assert stage.moves == [(["s1", "s2"], "runner r1 drains")]

    # Once it holds none of this coordinator's sessions, that is said once.
    stage.hosted = [("s3", "r2"), ("s1", "r2"), ("s2", "r2")]
    stage.look()
    stage.look()
    assert caplog.text.count("runner r1 drains: no session of this coordinator is left on it") == 1
    assert len(stage.moves) == 1
