"""Session workspace snapshots: save, restore and copy (fork), tenant-scoped.

Keys are ``<tenant>/<session_id>/workspace.tar.gz`` for every tenant, the default one
included, and the same function builds the key for writing and for reading. (Ash wrote the
default tenant's path and read the tenant's, so cold resume never found a non-default
tenant's files.)

Every method blocks (tar, gzip, blob I/O): callers run it in an executor or an actor's
thread, never on the event loop. A :class:`Snapshotter` holds no mutable state, so one may
be shared by threads; callers serialise the saves of one session (its actor does), or the
last save to finish wins.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ashd.snapshot.archive import DEFAULT_MAX_BYTES, create_archive, extract_archive
from ashd.snapshot.room import DiskFloor
from ashd.snapshot.store import BlobStore, LocalBlobStore

logger = logging.getLogger(__name__)

_SEGMENT = re.compile(r"^[A-Za-z0-9._-]+$")
ARCHIVE_NAME = "workspace.tar.gz"


@dataclass(frozen=True)
class SnapshotInfo:
    """A saved snapshot: its key, the stored archive's size, its file count and duration."""

    key: str
    bytes: int  # size of the stored (compressed) archive
    files: int
    ms: float
    content_bytes: int = 0  # file content before compression
    unchanged: bool = False  # a runner found the workspace as it last saved it: nothing uploaded


def snapshot_key(tenant_id: str, session_id: str) -> str:
    """``<tenant>/<session_id>/workspace.tar.gz``. Raises ValueError for an id that is not
    one path segment of ``[A-Za-z0-9._-]`` (so no id can reach another tenant's keys)."""
    for label, value in (("tenant id", tenant_id), ("session id", session_id)):
        if not _SEGMENT.match(value) or value in (".", ".."):
            raise ValueError(f"{label} {value!r} cannot name a snapshot: use A-Z a-z 0-9 . _ -")
    return f"{tenant_id}/{session_id}/{ARCHIVE_NAME}"


class Snapshotter:
    """Saves and restores session workspaces through a :class:`BlobStore`.

    ``tmp_dir`` holds archives while they are built or fetched (created on demand, one
    file per call, removed afterwards); put it on a disk with room for the largest archive.
    ``max_bytes`` bounds a workspace's file content, both when saving and when restoring.
    """

    def __init__(self, blob_store: BlobStore, tmp_dir: Path, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 floor: DiskFloor | None = None) -> None:
        self.blob_store = blob_store
        self.tmp_dir = Path(tmp_dir)
        self.max_bytes = max_bytes
        self.floor = floor  # room on the data disk a save never takes (ashd/snapshot/room.py)

    def save(self, session_id: str, tenant_id: str, workspace: Path) -> SnapshotInfo:
        """Archive ``workspace`` and store it, replacing the session's previous snapshot.

        Blocks. Raises ValueError for bad ids, SnapshotTooLarge past ``max_bytes``,
        SnapshotNoRoom when it would take the data disk below the floor,
        SnapshotError/BlobStoreError when the workspace cannot be read or the store written.
        A failed save leaves the previous snapshot in place.
        """
        key = snapshot_key(tenant_id, session_id)
        started = time.perf_counter()
        with self._tmp_file() as tmp:
            stats = create_archive(workspace, tmp, max_bytes=self.max_bytes, room=self._room_for(tmp))
            size = tmp.stat().st_size
            if self._copies_locally():
                assert self.floor is not None
                self.floor(size)  # the store's copy of the archive
            self.blob_store.put(key, tmp)
        info = SnapshotInfo(key, size, stats.files, (time.perf_counter() - started) * 1000, stats.bytes)
        logger.debug(
            "snapshot of session %s saved as %s: %d files, %d bytes stored in %.0f ms (%d links outside dropped)",
            session_id, key, info.files, info.bytes, info.ms, stats.dropped_links,
        )
        return info

    def restore(self, session_id: str, tenant_id: str, target: Path) -> bool:
        """Restore the session's snapshot as the directory ``target`` (absent or empty).

        Blocks. Returns False, leaving ``target`` untouched, if the tenant has no snapshot
        of this session. Raises ValueError for bad ids, UnsafeArchive/SnapshotTooLarge for
        a stored archive that breaks the rules (nothing is written then), SnapshotError if
        ``target`` is not empty, BlobStoreError if the store cannot be read.
        """
        key = snapshot_key(tenant_id, session_id)
        started = time.perf_counter()
        with self._tmp_file() as tmp:
            if not self.blob_store.get(key, tmp):
                return False
            stats = extract_archive(tmp, target, max_bytes=self.max_bytes)
        logger.debug(
            "snapshot %s restored into %s: %d files in %.0f ms",
            key, target, stats.files, (time.perf_counter() - started) * 1000,
        )
        return True

    def copy(self, from_session: str, to_session: str, tenant_id: str) -> bool:
        """Copy a session's snapshot to another session of the same tenant (fork).

        Blocks. Returns False if the source has no snapshot. Raises as :meth:`restore`.
        """
        with self._tmp_file() as tmp:
            if not self.blob_store.get(snapshot_key(tenant_id, from_session), tmp):
                return False
            self.blob_store.put(snapshot_key(tenant_id, to_session), tmp)
        return True

    def delete(self, session_id: str, tenant_id: str) -> None:
        """Remove the session's snapshot, if any. Blocks."""
        self.blob_store.delete(snapshot_key(tenant_id, session_id))

    def exists(self, session_id: str, tenant_id: str) -> bool:
        """True if the tenant has a snapshot of this session. Blocks."""
        return self.blob_store.exists(snapshot_key(tenant_id, session_id))

    def _room_for(self, tmp: Path) -> DiskFloor | None:
        return self.floor if self.floor is not None and self.floor.shares_disk(tmp) else None

    def _copies_locally(self) -> bool:
        store = self.blob_store
        return self.floor is not None and isinstance(store, LocalBlobStore) and self.floor.shares_disk(store.root)

    @contextlib.contextmanager
    def _tmp_file(self) -> Iterator[Path]:
        self.tmp_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, name = tempfile.mkstemp(prefix="snapshot-", suffix=".tar.gz", dir=self.tmp_dir)
        os.close(fd)
        try:
            yield Path(name)
        finally:
            Path(name).unlink(missing_ok=True)
