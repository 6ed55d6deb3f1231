"""Workspace snapshots off the session actors' threads: one small worker shared by all sessions.

A snapshot (digest, tar, gzip, blob I/O) can take seconds; on a session actor's thread it
would hold the next ``begin_turn`` behind it. Here a session only *requests* one and gets a
``Future`` that resolves when a snapshot taken after the request is complete.

Per session, requests are serialised and coalesced: a request made while an older one is
still queued replaces it (both futures resolve with the newer one); a request made while one
runs is queued behind it. So one workspace is never archived twice at once, and a burst of
turns costs at most one snapshot in flight plus one queued. Threads: ``threads`` daemon
workers, started with the worker and stopped by :meth:`stop`.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from pathlib import Path

from ashd.errors import SnapshotError, SnapshotSkipped, SnapshotTooLarge
from ashd.metrics import Metrics
from ashd.snapshot.fingerprint import workspace_digest
from ashd.snapshot.snapshots import Snapshotter
from ashd.store import Store, StoreError

log = logging.getLogger(__name__)

KEEP_DIGESTS = 4096  # sessions whose last saved digest is remembered (a forgotten one is saved again)
STOP_WAIT_S = 20.0  # within the supervisor's own stop timeout


@dataclass(frozen=True)
class SnapshotJob:
    tenant_id: str
    session_id: str
    sandbox_id: str  # the sandbox whose workspace this is (a new sandbox always saves once)
    workspace: Path


@dataclass
class _Slot:
    """One session's requests: the one waiting to run, and whether a worker holds the session."""

    job: SnapshotJob | None = None
    done: Future[None] = field(default_factory=Future)
    scheduled: bool = False  # in the ready queue or being drained by a worker


class SnapshotWorker:
    def __init__(self, snapshots: Snapshotter, store: Store, metrics: Metrics | None = None,
                 threads: int = 1, digest: Callable[[Path], str | None] = workspace_digest) -> None:
        """``digest``: what tells an unchanged workspace (ashd/snapshot/fingerprint.py)."""
        self._snapshots = snapshots
        self._digest = digest
        self._store = store
        self._metrics = metrics or Metrics()
        self._lock = threading.Lock()
        self._slots: dict[str, _Slot] = {}
        self._saved: OrderedDict[str, tuple[str, str]] = OrderedDict()  # session -> (sandbox id, digest)
        self._ready: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._work, name=f"ashd-snapshot-{n}", daemon=True)
                         for n in range(threads)]
        for thread in self._threads:
            thread.start()

    def request(self, job: SnapshotJob) -> Future[None]:
        """Ask for a snapshot of ``job.workspace``. Never blocks beyond a lock. The future
        resolves (never with an error: failures are logged and counted) once a snapshot
        requested no earlier than this one is over."""
        with self._lock:
            slot = self._slots.setdefault(job.session_id, _Slot())
            slot.job = job  # supersedes a queued older request; its future is shared
            done = slot.done
            if not slot.scheduled:
                slot.scheduled = True
                self._ready.put(job.session_id)
            return done

    def stop(self, timeout_s: float = STOP_WAIT_S) -> None:
        """Finish the requests already made, then end the threads (waits up to ``timeout_s``)."""
        for _ in self._threads:
            self._ready.put(None)
        for thread in self._threads:
            thread.join(timeout_s)

    def _work(self) -> None:
        while (session_id := self._ready.get()) is not None:
            self._drain(session_id)

    def _drain(self, session_id: str) -> None:
        while True:
            with self._lock:
                slot = self._slots[session_id]
                job, done = slot.job, slot.done
                if job is None:
                    del self._slots[session_id]
                    return
                slot.job, slot.done = None, Future()  # later requests queue behind this one
            try:
                self._save(job)
            except Exception:  # boundary: one session's failure never stops the worker
                log.exception("session %s: snapshot failed", session_id)
            finally:
                resolve(done)

    def _save(self, job: SnapshotJob) -> None:
        if not job.workspace.is_dir():
            return
        digest = self._digest(job.workspace)
        if digest is not None and self._saved.get(job.session_id) == (job.sandbox_id, digest):
            return  # nothing changed since this sandbox's last snapshot
        judged = (job.sandbox_id, digest) if digest is not None else None
        try:
            info = self._snapshots.save(job.session_id, job.tenant_id, job.workspace)
            if info.unchanged:
                log.debug("session %s: snapshot %s kept: the workspace is unchanged (judged by its runner)",
                          job.session_id, info.key)
            else:
                log.debug("session %s: snapshot %s (%d files, %d bytes, %.0f ms)", job.session_id, info.key,
                          info.files, info.bytes, info.ms)
            self._remember(job.session_id, judged)
        except SnapshotSkipped as exc:
            # Files too large would be skipped again (told once, not every turn); a full disk may
            # have room by the next turn, so that is tried again.
            self._remember(job.session_id, judged if isinstance(exc, SnapshotTooLarge) else None)
            self._skipped(job, exc)
        except (SnapshotError, OSError) as exc:
            self._remember(job.session_id, None)
            log.error("session %s: workspace snapshot failed: %s", job.session_id, exc)

    def _remember(self, session_id: str, saved: tuple[str, str] | None) -> None:
        with self._lock:
            self._saved.pop(session_id, None)
            if saved is not None:
                self._saved[session_id] = saved
                while len(self._saved) > KEEP_DIGESTS:
                    self._saved.popitem(last=False)

    def _skipped(self, job: SnapshotJob, skip: SnapshotSkipped) -> None:
        """A snapshot not taken is an event the user sees and a metric, never silence."""
        log.warning("session %s: workspace snapshot skipped (%s): %s", job.session_id, skip.reason, skip.message)
        self._metrics.snapshot_skipped.labels(skip.reason).inc()
        payload = {"type": "snapshot_skipped", "reason": skip.reason, "message": skip.message,
                   "limitBytes": skip.limit_bytes}
        try:
            self._store.append_event(job.tenant_id, job.session_id, "lifecycle", json.dumps(payload))
        except StoreError as exc:
            log.error("session %s: snapshot_skipped event not stored: %s", job.session_id, exc)


def resolve(done: Future[None]) -> None:
    """Resolve a future that waiters may have cancelled (a cancelled one stays so)."""
    try:
        done.set_result(None)
    except InvalidStateError:
        pass
