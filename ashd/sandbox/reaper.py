"""Start-up reconciliation of sandbox mounts left by an ashd that did not shut down cleanly.

Sandboxes die with their daemon (``--die-with-parent``, ``PR_SET_PDEATHSIG``), but the kernel
keeps their mounts: the workspace image, the bind mounts of workspace and HOME, the netns
file. When ashd starts, none of *its* sandboxes can be running, so every mount under its
sandboxes dir and its own mount root is stale and is detached (deepest first). Mounts of other
daemons (other data dirs) are never touched. Blocking; called once before serving.
"""

from __future__ import annotations

import logging
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
