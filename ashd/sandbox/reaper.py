"""Start-up reconciliation of what an ashd that did not shut down cleanly left behind.

Sandboxes die with their daemon (``--die-with-parent``, ``PR_SET_PDEATHSIG``), but the kernel
keeps their mounts: the workspace image, the bind mounts of workspace and HOME, the netns
file; and an image whose unmount failed keeps its loop device. When ashd starts, none of *its*
sandboxes can be running (their cgroups were swept first, see ``cgroups.sweep``), so every
mount under its sandboxes dir and its own mount root is stale and is detached (deepest
first), every loop device backed by an image in its sandboxes dir is detached, and its run
dirs are removed. What belongs to other daemons (other data dirs, other mount roots) is never
touched. Blocking; called once before serving.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

from ashd.sandbox import syscalls

log = logging.getLogger(__name__)


def mount_points(mountinfo: str) -> list[str]:
    """Mount points listed in /proc/self/mountinfo text (octal escapes decoded)."""
    points = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 4:
            points.append(fields[4].encode().decode("unicode_escape"))
    return points


def stale_under(points: list[str], roots: list[Path]) -> list[str]:
    """Pure: the mount points inside any of ``roots``, deepest first."""
    prefixes = [str(root.resolve()).rstrip("/") + "/" for root in roots]
    inside = {p for p in points if any(p.startswith(prefix) for prefix in prefixes)}
    return sorted(inside, key=lambda p: (p.count("/"), p), reverse=True)


def reap(roots: list[Path]) -> int:
    """Detach every mount inside ``roots``. Returns how many; logs (never raises) on failure."""
    try:
        points = mount_points(Path("/proc/self/mountinfo").read_text())
    except OSError as exc:  # an unreadable table is not an empty one: touch nothing
        log.error("cannot read the mount table, stale sandbox mounts not checked: %s", exc)
        return 0
    reaped = 0
    for point in stale_under(points, roots):
        try:
            syscalls.umount(point)
            reaped += 1
        except OSError as exc:
            log.error("cannot detach stale sandbox mount %s: %s", point, exc)
    if reaped:
        log.warning("detached %d sandbox mount(s) left by an unclean shutdown", reaped)
    return reaped


LOSETUP = "/usr/sbin/losetup"
SYS_BLOCK = Path("/sys/block")


def loops_backed_inside(roots: list[Path], sys_block: Path = SYS_BLOCK) -> list[str]:
    """The loop devices (``/dev/loopN``) whose backing file is inside any of ``roots``."""
    prefixes = [str(root.resolve()).rstrip("/") + "/" for root in roots]
    found = []
    for backing in sorted(sys_block.glob("loop*/loop/backing_file")):
        try:
            path = backing.read_text().strip().removesuffix(" (deleted)")
        except OSError:
            continue
        if any(path.startswith(prefix) for prefix in prefixes):
            found.append(f"/dev/{backing.parent.parent.name}")
    return found


def detach_loops(roots: list[Path]) -> int:
    """Detach the loop devices of images inside ``roots`` (after :func:`reap`). Never raises."""
    detached = 0
    for device in loops_backed_inside(roots):
        result = subprocess.run([LOSETUP, "-d", device], capture_output=True, timeout=30, check=False)
        if result.returncode == 0:
            detached += 1
        else:
            log.error("cannot detach stale loop device %s: %s", device, result.stderr.decode(errors="replace").strip())
    if detached:
        log.warning("detached %d loop device(s) of workspace images left by an unclean shutdown", detached)
    return detached


def remove_run_dirs(mount_root: Path) -> int:
    """Remove the per-sandbox run dirs under this daemon's mount root (after :func:`reap`).

    A dir with a mount still inside (its unmount failed) is kept: removing it would reach
    into the mounted workspace. Never raises.
    """
    try:
        children = [child for child in mount_root.iterdir() if child.is_dir() and not child.is_symlink()]
        points = mount_points(Path("/proc/self/mountinfo").read_text())
    except OSError:
        return 0
    removed = 0
    for child in children:
        if stale_under(points, [child]) or str(child.resolve()) in points:
            log.error("run dir %s still has a mount inside; left in place", child)
            continue
        shutil.rmtree(child, ignore_errors=True)
        removed += not child.exists()
    if removed:
        log.warning("removed %d sandbox run dir(s) left by an unclean shutdown", removed)
    return removed
