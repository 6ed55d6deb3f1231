"""Whether one more linked sandbox fits a runner, and its disk for what it writes.

A runner holds at most ``capacity`` linked sandboxes (what it advertises to the coordinators).
When its launcher makes workspace images, the data disk follows the standalone pool's rule
(:class:`~ashd.sandbox.admission.DiskLedger`) over every sandbox folder the runner keeps (each
one's image may grow again: a session that resumes here mounts it):

- a launch's new image is promised its quota, held as pending until the launch is over
  (:meth:`LinkedAdmission.admit_launch`, :meth:`LinkedAdmission.launched`);
- a write of a file transfer's file (an upload's spool, a download's bundle:
  ashd/sandbox/workspace_server.py) is admitted by the same rule and held as pending while it
  is written (:meth:`LinkedAdmission.transfer_room`).

One admission at a time, so two never pass on the same free space. Blocking (worker threads):
a statvfs, a stat per kept folder, a store read.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Iterator

from ashd.errors import Unavailable
from ashd.sandbox.admission import MIB, DiskLedger
from ashd.sandbox.launch_order import LaunchOrder


class LinkedAdmission:
    def __init__(self, capacity: int, ledger: DiskLedger | None, default_disk_mb: int) -> None:
        """``ledger`` None: the launcher makes no images (no disk rule)."""
        self.capacity = capacity
        self._ledger = ledger
        self._default_disk_mb = default_disk_mb
        self._lock = threading.Lock()
        self._pending: dict[str, int] = {}  # sandbox id or transfer key -> bytes promised, not written yet

    def full(self) -> Unavailable:
        return Unavailable(f"runner is full: it holds at most {self.capacity} sandboxes (ASH_MAX_SANDBOXES, or "
                           "what its memory holds); retry shortly", retry_after_s=5)

    def admit_launch(self, order: LaunchOrder) -> None:
        """Promise ``order``'s new image its quota until :meth:`launched`, or raise
        InsufficientStorage. Nothing to promise when its folder is kept (its image exists and
        counts among the kept ones; a fresh order replaces it) or no image is made."""
        if self._ledger is None:
            return
        with self._lock:
            kept = self._kept()
            quota = self._quota_mb(order)
            if quota and (order.sandbox_id not in kept or order.fresh):
                self._ledger.admit(order.sandbox_id, quota, self._pending, kept)
                self._pending[order.sandbox_id] = quota * MIB

    def launched(self, sandbox_id: str) -> None:
        """The launch is over: its image is made, or never will be."""
        self._forget(sandbox_id)

    @contextlib.contextmanager
    def transfer_room(self, nbytes: int) -> Iterator[None]:
        """Admit ``nbytes`` more of a file transfer's file (or raise InsufficientStorage), held
        as pending for every other admission while the block writes them."""
        if self._ledger is None:
            yield
            return
        key = f"transfer-{secrets.token_hex(8)}"  # never a sandbox id (those are UUIDs)
        with self._lock:
            self._ledger.admit_transient(nbytes, self._pending, self._kept())
            self._pending[key] = nbytes
        try:
            yield
        finally:
            self._forget(key)

    def _forget(self, key: str) -> None:
        """The promise under ``key`` is kept or void: its bytes are on the disk, or never will be."""
        with self._lock:
            self._pending.pop(key, None)

    def _quota_mb(self, order: LaunchOrder) -> int:
        limits = order.policy.get("limits") if isinstance(order.policy, dict) else None
        quota = (limits if isinstance(limits, dict) else {}).get("disk_mb") or self._default_disk_mb
        return quota if isinstance(quota, int) and not isinstance(quota, bool) and quota > 0 else 0

    def _kept(self) -> set[str]:
        """Ids of the sandbox folders on this runner."""
        assert self._ledger is not None
        try:
            return {p.name for p in (self._ledger.data_dir / "sandboxes").iterdir()}
        except FileNotFoundError:
            return set()
