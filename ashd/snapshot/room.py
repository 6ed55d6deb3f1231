"""How far snapshots may fill the data disk: never into the room kept for the store.

Local snapshots and their temporary archives share the data disk with the database. A save
stops (:class:`~ashd.errors.SnapshotNoRoom`, reason ``disk_space``: a session event and a
metric, like any skipped snapshot) rather than take that disk below ``min_free`` bytes. The
check runs before every write, against the disk's real free space, so concurrent saves of
several sessions see each other's bytes. Stateless and thread-safe; blocking (one statvfs).
"""

from __future__ import annotations

import os
from pathlib import Path

from ashd.errors import SnapshotNoRoom


class DiskFloor:
    """``min_free`` bytes of the file system holding ``path`` that snapshots never take."""

    def __init__(self, path: Path, min_free: int) -> None:
        self.path = path
        self.min_free = min_free

    def free(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def room_for(self, size: int) -> bool:
        """Whether ``size`` more bytes leave the disk at least ``min_free``."""
        return self.free() - size >= self.min_free

    def __call__(self, size: int) -> None:
        """Allow writing ``size`` more bytes, or raise SnapshotNoRoom."""
        if not self.room_for(size):
            raise SnapshotNoRoom(
                f"the data disk is too full to snapshot this workspace: its last {self.min_free >> 20} MiB "
                "are kept for the database; the previous snapshot stays. Free space on the disk, remove large "
                "files from the workspace, or store snapshots elsewhere (snapshot.url)", self.min_free)

    def shares_disk(self, path: Path) -> bool:
        """True if ``path`` (or its nearest existing parent) is on the same file system."""
        while not path.exists() and path != path.parent:
            path = path.parent
        return os.stat(path).st_dev == os.stat(self.path).st_dev
