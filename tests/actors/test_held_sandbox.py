"""HeldSandbox as a plain object: what it asks of the sandbox actor, the pool and the snapshot
worker (fakes at those seams), and what it holds after."""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pykka

from ashd.actors.held_sandbox import HeldSandbox
from ashd.actors.messages import Pending, SandboxStarted
from ashd.actors.snapshot_worker import SnapshotJob
from ashd.layout import Layout

STARTED = SandboxStarted("sb-1", "/run/sock", 4242, 12.0)


class Answer:
    """What an actor proxy's call returns: ``get(timeout=...)`` gives the value or raises it."""

    def __init__(self, value: object = None) -> None:
        self._value = value

    def get(self, timeout: float | None = None) -> object:
        assert timeout is not None, "every ask has a timeout"
        if isinstance(self._value, BaseException):
            raise self._value
        return self._value


class Recorder:
    """The sandbox actor and the pool: records every call, answers from ``answers``."""

    def __init__(self, calls: list[tuple[Any, ...]], **answers: object) -> None:
        self._calls, self._answers = calls, answers

    def __getattr__(self, name: str) -> Any:
        def call(*args: object) -> Answer:
            self._calls.append((name, *args))
            return Answer(self._answers.get(name))
        return call


class Worker:
    def __init__(self) -> None:
        self.jobs: list[SnapshotJob] = []
        self.futures: list[Future[None]] = []

    def request(self, job: SnapshotJob) -> Future[None]:
        self.jobs.append(job)
        self.futures.append(Future())
        return self.futures[-1]


def held(tmp_path: Path, calls: list[tuple[Any, ...]], settle: Any = None, **pool_answers: object
         ) -> tuple[HeldSandbox, Worker]:
    deps: Any = SimpleNamespace(stop_timeout_s=5.0, settle=settle, pool=Recorder(calls, **pool_answers),
                                layout=Layout(tmp_path), discard_elsewhere=None)
    worker = Worker()
    return HeldSandbox("sess-1", "tenant-a", deps, worker), worker  # type: ignore[arg-type]


def test_a_release_stops_the_bridge_then_gives_the_sandbox_back_and_holds_nothing(tmp_path: Path) -> None:
    calls: list[tuple[Any, ...]] = []
    sandbox, _ = held(tmp_path, calls)
    sandbox.release()  # nothing held: nothing asked
    assert calls == []
    sandbox.take(STARTED, Recorder(calls))  # type: ignore[arg-type]
    sandbox.release(grace_s=0.0)
    assert calls == [("stop_bridge", 0.0), ("release", "sb-1")]
    assert sandbox.started is None


def test_a_bridge_already_stopped_is_still_given_back(tmp_path: Path) -> None:
    calls: list[tuple[Any, ...]] = []
    sandbox, _ = held(tmp_path, calls)
    sandbox.take(STARTED, Recorder(calls, stop_bridge=pykka.ActorDeadError("gone")))  # type: ignore[arg-type]
    sandbox.release()
    assert calls[-1] == ("release", "sb-1") and sandbox.started is None


def test_a_handover_gives_a_detached_sandbox_back_without_stopping_it(tmp_path: Path) -> None:
    calls: list[tuple[Any, ...]] = []
    sandbox, worker = held(tmp_path, calls)
    sandbox.take(STARTED, Recorder(calls, detach_bridge=True))  # type: ignore[arg-type]
    sandbox.snapshot_after_turn()
    worker.futures[0].set_result(None)  # the last turn's snapshot is saved before the handover
    sandbox.hand_over()
    assert calls == [("detach_bridge",), ("release", "sb-1")]
    assert sandbox.started is None


def test_a_sandbox_that_cannot_be_handed_over_is_stopped(tmp_path: Path) -> None:
    calls: list[tuple[Any, ...]] = []
    sandbox, _ = held(tmp_path, calls)
    sandbox.take(STARTED, Recorder(calls, detach_bridge=False))  # type: ignore[arg-type]
    sandbox.hand_over()
    assert calls == [("detach_bridge",), ("stop_bridge", None), ("release", "sb-1")]


def test_a_stop_waits_for_one_snapshot_of_the_live_workspace(tmp_path: Path) -> None:
    sandbox, worker = held(tmp_path, [])
    assert sandbox.settle_snapshot(draft=False) is None  # no sandbox: nothing to save
    sandbox.take(STARTED, None)
    assert sandbox.settle_snapshot(draft=True) is None  # an unclaimed pre-warm: nothing to save
    first = sandbox.settle_snapshot(draft=False)
    assert isinstance(first, Pending) and sandbox.settling
    assert isinstance(sandbox.settle_snapshot(draft=False), Pending) and len(worker.jobs) == 1  # the repeat waits
    assert worker.jobs[0] == SnapshotJob("tenant-a", "sess-1", "sb-1", tmp_path / "sandboxes" / "sb-1" / "workspace")
    worker.futures[0].set_result(None)
    assert sandbox.settle_snapshot(draft=False) is None and not sandbox.settling


def test_a_turn_makes_the_next_stop_ask_for_a_new_snapshot(tmp_path: Path) -> None:
    sandbox, worker = held(tmp_path, [])
    sandbox.take(STARTED, None)
    assert isinstance(sandbox.settle_snapshot(draft=False), Pending)
    sandbox.files_changed()
    assert isinstance(sandbox.settle_snapshot(draft=False), Pending) and len(worker.jobs) == 2


def test_the_folder_stays_while_its_sandbox_is_still_tearing_down(tmp_path: Path) -> None:
    folder = tmp_path / "sandboxes" / "sb-1"
    (folder / "workspace").mkdir(parents=True)
    busy, _ = held(tmp_path, [], settle=lambda sandbox_id, timeout_s: False)
    busy.discard_folder("sb-1")
    assert folder.exists()
    settled, _ = held(tmp_path, [], settle=lambda sandbox_id, timeout_s: True)
    settled.discard_folder("sb-1")
    assert not folder.exists()
