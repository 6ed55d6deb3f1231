"""A disk quota per sandbox that holds by construction: a loop-mounted ext4 image.

The image (``<sandbox>/disk.img``, sparse; see :mod:`ashd.sandbox.admission` for how its
quota is promised on the data disk) lives in the sandbox dir, so the workspace and
the CLI's HOME survive sandbox restarts and ashd restarts; it is mounted only while the
sandbox runs. A full image returns ENOSPC to the writer; nothing is polled. The size is fixed
when the image is made (a later, larger limit does not grow it).

This host's kernel has no project quotas (no CONFIG_QFMT_V2 / XFS quota), which is why
images are used. Needs root (mount, loop devices). Calls block (mkfs ~6 ms; mount ~1 ms
in-process, :mod:`ashd.sandbox.loopdev`, else ~5-10 ms with ``mount -o loop``).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

from ashd.sandbox import loopdev

IMAGE_NAME = "disk.img"  # in the sandbox dir; its quota is admitted first (ashd/sandbox/admission.py)
MKFS = "/usr/sbin/mkfs.ext4"
MOUNT, UMOUNT = "/usr/bin/mount", "/usr/bin/umount"

log = logging.getLogger(__name__)


class DiskError(OSError):
    pass


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, timeout=60, check=False)
    if result.returncode != 0:
        detail = result.stderr.decode(errors="replace").strip()
        raise DiskError(f"{' '.join(argv)} failed ({result.returncode}): {detail}")


def chown_tree(root: Path, uid: int) -> None:
    """Give ``root`` and everything under it to uid (group too). Never follows symlinks (a
    ``root`` that is one is left alone: its target may be anywhere)."""
    if os.path.islink(root):
        return
    os.lchown(root, uid, uid)
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            os.lchown(os.path.join(top, name), uid, uid)


class WorkspaceDisk:
    """One image and its mountpoint. Thread-safe per sandbox (one owner at a time)."""

    def __init__(self, image: Path, mountpoint: Path) -> None:
        self.image = image
        self.mountpoint = mountpoint

    @property
    def exists(self) -> bool:
        return self.image.exists()

    @property
    def mounted(self) -> bool:
        return os.path.ismount(self.mountpoint)

    def create(self, size_mb: int, uid: int) -> None:
        """Make a sparse ext4 image owned (root dir) by uid. Raises DiskError."""
        tmp = self.image.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            fh.truncate(size_mb << 20)
        _run([MKFS, "-q", "-F", "-m", "0", "-E",
              f"root_owner={uid}:{uid},lazy_itable_init=1,lazy_journal_init=1", str(tmp)])
        tmp.chmod(0o600)
        tmp.replace(self.image)

    def mount(self) -> None:
        """Mount (nosuid, nodev) at the mountpoint; a no-op if already mounted."""
        if self.mounted:
            return
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        try:
            loopdev.mount_image(self.image, self.mountpoint)
        except OSError as exc:  # e.g. a kernel before 5.8 (no LOOP_CONFIGURE): the mount tool
            log.debug("mounting %s in-process failed (%s); using %s", self.image, exc, MOUNT)
            _run([MOUNT, "-o", "loop,nosuid,nodev,noatime", str(self.image), str(self.mountpoint)])
        shutil.rmtree(self.mountpoint / "lost+found", ignore_errors=True)  # root-owned, useless here

    def umount(self) -> None:
        """Unmount (lazily if busy) and detach the loop device. Never raises."""
        if not self.mounted:
            return
        try:
            _run([UMOUNT, str(self.mountpoint)])
        except DiskError:
            subprocess.run([UMOUNT, "-l", str(self.mountpoint)], capture_output=True, timeout=30, check=False)

    def chown_tree(self, uid: int) -> None:
        """Give everything on the image to uid (after a uid change). Never follows symlinks."""
        chown_tree(self.mountpoint, uid)

    def owner(self) -> int:
        return self.mountpoint.stat().st_uid

    def usage(self) -> tuple[int, int]:
        """(used, total) bytes of the mounted image."""
        st = os.statvfs(self.mountpoint)
        return (st.f_blocks - st.f_bfree) * st.f_frsize, st.f_blocks * st.f_frsize
