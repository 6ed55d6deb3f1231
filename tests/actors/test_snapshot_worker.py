"""ashd/actors/snapshot_worker.py: snapshots off the actors' threads, serialised and coalesced."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ashd.actors.snapshot_worker import SnapshotJob, SnapshotWorker
from ashd.errors import SnapshotError
from ashd.snapshot.snapshots import SnapshotInfo
from ashd.store import Store


class SlowSnapshots:
    """Stands in for Snapshotter: each save waits for the test's gate; records overlap."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started = threading.Semaphore(0)
        self.saves: list[str] = []
        self.running = 0
        self.most_at_once = 0
        self.fail = False
        self._lock = threading.Lock()

    def save(self, session_id: str, tenant_id: str, workspace: Path) -> SnapshotInfo:
        with self._lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
            self.saves.append((workspace / "f").read_text())
        self.started.release()
        try:
            assert self.gate.wait(10)
            if self.fail:
                raise SnapshotError("the blob store is down")
            return SnapshotInfo("k", 1, 1, 1.0)
        finally:
            with self._lock:
                self.running -= 1


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[tuple[SnapshotWorker, SlowSnapshots]]:
    snaps = SlowSnapshots()
    store = Store(f"sqlite:///{tmp_path / 'ash.db'}")
    store.migrate()
    fake: Any = snaps
    worker = SnapshotWorker(fake, store, threads=2, digest=lambda ws: (ws / "f").read_text())
    yield worker, snaps
    snaps.gate.set()
    worker.stop(10)


def job(tmp_path: Path, content: str, session: str = "s1") -> SnapshotJob:
    ws = tmp_path / session
    ws.mkdir(exist_ok=True)
    (ws / "f").write_text(content)
    return SnapshotJob("t", session, session, ws)


def test_newer_requests_supersede_a_queued_one_and_never_overlap(tmp_path: Path,
                                                                  worker: tuple[SnapshotWorker, SlowSnapshots]) -> None:
    snapshots, snaps = worker
    first = snapshots.request(job(tmp_path, "turn 1"))
    assert snaps.started.acquire(timeout=5)  # turn 1's snapshot is running
    second = snapshots.request(job(tmp_path, "turn 2"))
    third = snapshots.request(job(tmp_path, "turn 3"))  # replaces turn 2's, still queued
    assert second is third and not first.done()
    snaps.gate.set()
    third.result(timeout=10)
    assert first.done()
    assert snaps.saves == ["turn 1", "turn 3"] and snaps.most_at_once == 1


def test_sessions_do_not_wait_for_each_other(tmp_path: Path, worker: tuple[SnapshotWorker, SlowSnapshots]) -> None:
    snapshots, snaps = worker
    snapshots.request(job(tmp_path, "a", "s1"))
    snapshots.request(job(tmp_path, "b", "s2"))
    assert snaps.started.acquire(timeout=5) and snaps.started.acquire(timeout=5)  # both run at once
    assert snaps.most_at_once == 2
    snaps.gate.set()


def test_an_unchanged_workspace_is_not_saved_twice_and_a_failure_is_retried(
        tmp_path: Path, worker: tuple[SnapshotWorker, SlowSnapshots]) -> None:
    snapshots, snaps = worker
    snaps.gate.set()
    snapshots.request(job(tmp_path, "same")).result(timeout=10)
    snapshots.request(job(tmp_path, "same")).result(timeout=10)
    assert snaps.saves == ["same"]
    snaps.fail = True
    snapshots.request(job(tmp_path, "changed")).result(timeout=10)  # logged, the future still resolves
    snaps.fail = False
    snapshots.request(job(tmp_path, "changed")).result(timeout=10)  # not remembered as saved: tried again
    assert snaps.saves == ["same", "changed", "changed"]
