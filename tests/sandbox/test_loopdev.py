"""Workspace images mounted in-process: the same mount as ``mount -o loop``, nothing left attached."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from ashd.sandbox import loopdev
from ashd.sandbox.quota import WorkspaceDisk


def options(mountpoint: Path) -> tuple[str, set[str]]:
    """(file system type, mount options) of the mount at ``mountpoint``."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == str(mountpoint):
            after = fields[fields.index("-") + 1:]
            return after[0], set(fields[5].split(","))
    raise AssertionError(f"{mountpoint} is not mounted")


def test_an_image_is_mounted_nosuid_nodev_and_detached_when_unmounted(tmp_path: Path) -> None:
    disk = WorkspaceDisk(tmp_path / "disk.img", tmp_path / "mnt")
    disk.create(32, 4321)
    disk.mountpoint.mkdir()
    loopdev.mount_image(disk.image, disk.mountpoint)  # what disk.mount() does (else falls back to mount)
    try:
        assert options(disk.mountpoint)[0] == "ext4"
        assert {"nosuid", "nodev", "noatime", "rw"} <= options(disk.mountpoint)[1]
        assert disk.owner() == 4321
        assert len(loopdev.attached(disk.image)) == 1
        # Attached already (a lazy unmount still in progress): a second mount is refused.
        with pytest.raises(OSError) as refused:
            loopdev.mount_image(disk.image, tmp_path)
        assert refused.value.errno == errno.EBUSY
    finally:
        disk.umount()
    assert not disk.mounted and loopdev.attached(disk.image) == []


def test_a_failed_mount_leaves_no_loop_device(tmp_path: Path) -> None:
    image = tmp_path / "not-ext4.img"
    image.write_bytes(bytes(1 << 20))
    (tmp_path / "mnt").mkdir()
    with pytest.raises(OSError):
        loopdev.mount_image(image, tmp_path / "mnt")
    assert loopdev.attached(image) == []
