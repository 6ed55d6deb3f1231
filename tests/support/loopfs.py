"""A small ext4 file system of a test's own: a sparse image, loop-mounted, always unmounted.

For tests that must see what filling a disk does (tests/security/test_disk_admission.py,
tests/snapshot/test_room.py). Needs root.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path


def run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=120)


def unmount(path: Path) -> None:
    """Unmount (lazily if busy). Never raises."""
    if subprocess.run(["umount", str(path)], capture_output=True, timeout=60, check=False).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=60, check=False)


@contextlib.contextmanager
def loop_fs(base: Path, size_mb: int) -> Iterator[Path]:
    """``base``/mnt: a fresh ext4 of ``size_mb`` (no root-reserved blocks), unmounted on exit."""
    image, mnt = base / "fs.img", base / "mnt"
    mnt.mkdir(parents=True)
    with open(image, "wb") as fh:
        fh.truncate(size_mb << 20)
    run("mkfs.ext4", "-q", "-F", "-m", "0", str(image))
    run("mount", "-o", "loop", str(image), str(mnt))
    try:
        yield mnt
    finally:
        unmount(mnt)
        image.unlink(missing_ok=True)
