"""A benchmark's scratch directory (daemons' data dirs, sessions' workspaces), removed when
the benchmark's process exits, so repeated runs do not fill /tmp."""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
from pathlib import Path


def scratch(prefix: str) -> Path:
    """A new directory under the system's temporary directory, removed at exit."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(remove, path)
    return path


def remove(path: Path) -> None:
    """Remove ``path``, unless something is still mounted under it (a sandbox's workspace
    image left by a daemon that did not stop cleanly: removing through the mount would empty
    it). Then it is left, and named, for that daemon's next start or the operator."""
    try:
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        mounts = []
    if any(mount == str(path) or mount.startswith(f"{path}/") for mount in mounts):
        print(f"left {path}: something is still mounted under it", file=sys.stderr)
        return
    shutil.rmtree(path, ignore_errors=True)
