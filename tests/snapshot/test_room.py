"""Snapshots never take the data disk's last ``min_free`` bytes (ashd/snapshot/room.py).

A 64 MB ext4 of the test's own holds the temporary archives and the local blob store, as the
data dir does in production; the workspaces (random bytes: they do not compress) live elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ashd.errors import SnapshotNoRoom
from ashd.snapshot.room import DiskFloor
from ashd.snapshot.snapshots import Snapshotter
from ashd.snapshot.store import LocalBlobStore
from tests.support.loopfs import loop_fs

if os.geteuid() != 0:
    pytest.skip("needs root (a loop-mounted file system)", allow_module_level=True)

MIB = 1 << 20
ROOM = 20 * MIB  # what snapshots may use above the floor


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with loop_fs(tmp_path / "disk-base", 64) as mnt:
        yield mnt


def workspace(root: Path, mib: int) -> Path:
    root.mkdir(parents=True)
    (root / "data.bin").write_bytes(os.urandom(mib * MIB))
    return root


def test_a_save_stops_short_of_the_floor_and_one_that_fits_is_saved(disk: Path, tmp_path: Path) -> None:
    floor = DiskFloor(disk, min_free=DiskFloor(disk, 0).free() - ROOM)
    snapshots = Snapshotter(LocalBlobStore(disk / "snapshots"), disk / "tmp", floor=floor)
    # 12 MiB: the temporary archive fits the room, its copy into the blob store does not.
    with pytest.raises(SnapshotNoRoom) as skipped:
        snapshots.save("s1", "t", workspace(tmp_path / "ws12", 12))
    assert skipped.value.reason == "disk_space" and "snapshot.url" in skipped.value.message
    # 30 MiB: stopped while the archive is written.
    with pytest.raises(SnapshotNoRoom):
        snapshots.save("s2", "t", workspace(tmp_path / "ws30", 30))
    assert floor.free() >= floor.min_free
    assert not list((disk / "tmp").iterdir()) and not snapshots.exists("s1", "t") and not snapshots.exists("s2", "t")
    info = snapshots.save("s3", "t", workspace(tmp_path / "ws4", 4))
    assert info.bytes > 4 * MIB - MIB and snapshots.exists("s3", "t")


def test_no_floor_on_another_disk(disk: Path, tmp_path: Path) -> None:
    floor = DiskFloor(disk, min_free=1 << 60)  # nothing may be written on ``disk``
    snapshots = Snapshotter(LocalBlobStore(tmp_path / "blobs"), tmp_path / "tmp", floor=floor)
    assert snapshots.save("s", "t", workspace(tmp_path / "ws", 1)).files == 1
