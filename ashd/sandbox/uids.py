"""One unprivileged host uid per live sandbox.

Each sandbox runs as its own uid, so one agent's processes cannot signal, ptrace or read the
files of another even if both escaped bwrap. A sandbox keeps its uid across restarts when it
is free (its workspace is already owned by it); the choice is remembered in ``<sandbox>/uid``.
The range must hold no real accounts (default 200000-264999: above the subordinate-id ranges
``useradd`` hands out).

A uid in use is also claimed host-wide with an ``flock`` on ``<lock_dir>/<uid>.lock``, so two
ashd processes on one host never hand out the same uid; the kernel drops the lock if a
daemon dies, so nothing stays claimed by a dead process.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

from ashd.errors import SandboxFailed


class UidPool:
    """Thread-safe: ``acquire`` on actor threads, ``release`` on exit-watcher threads."""

    def __init__(self, base: int, count: int, lock_dir: Path = Path("/run/ashd/uids")) -> None:
        if base < 1000 or count < 1:
            raise ValueError("the sandbox uid range must start at 1000 or above and be non-empty")
        self._base, self._count = base, count
        self._lock = threading.Lock()
        self._owner: dict[int, str] = {}  # uid -> sandbox id
        self._claims: dict[int, int] = {}  # uid -> fd holding its host-wide lock
        self._lock_dir = lock_dir
        self._next = 0

    def acquire(self, sandbox_id: str, record: Path) -> int:
        """The uid for this sandbox: the remembered one if free, else the next free one.

        Raises SandboxFailed when every uid of the range is in use.
        """
        with self._lock:
            for uid, owner in self._owner.items():
                if owner == sandbox_id:
                    return uid
            remembered = self._read(record)
            if remembered is not None and remembered not in self._owner and self._claim(remembered):
                uid = remembered
            else:
                uid = self._free()
            self._owner[uid] = sandbox_id
        record.write_text(str(uid))
        return uid

    def release(self, sandbox_id: str) -> None:
        with self._lock:
            for uid, owner in list(self._owner.items()):
                if owner == sandbox_id:
                    del self._owner[uid]
                    os.close(self._claims.pop(uid))

    def in_use(self) -> int:
        with self._lock:
            return len(self._owner)

    def _free(self) -> int:
        for i in range(self._count):
            uid = self._base + (self._next + i) % self._count
            if uid not in self._owner and self._claim(uid):
                self._next = (uid - self._base + 1) % self._count
                return uid
        raise SandboxFailed(f"all {self._count} sandbox uids are in use; raise sandbox.uid_count")

    def _claim(self, uid: int) -> bool:
        """Take the host-wide lock of ``uid``; False if another process holds it."""
        self._lock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self._lock_dir / f"{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._claims[uid] = fd
        return True

    def _read(self, record: Path) -> int | None:
        try:
            uid = int(record.read_text().strip())
        except (OSError, ValueError):
            return None
        return uid if self._base <= uid < self._base + self._count else None
