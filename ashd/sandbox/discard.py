"""Removing a sandbox folder that no session needs any more.

A sandbox folder (``<data>/sandboxes/<id>``) holds the session's disk image (``disk.img``,
sparse, up to ``sandbox.disk_mb``), the plain workspace/home copies, its uid record and its
log. Who keeps what (docs/operations.md, "Disk use of sandbox folders"):

- a paused, stopped or errored session that was serving keeps its folder: a resume mounts the
  same image again (files and the CLI's HOME as they were);
- a create that failed removes it: no turn ever ran there, and a resume builds the workspace
  afresh from the agent folder (or the snapshot) and the conversation from the store;
- an ended or deleted session removes it: it can never start again, and its files stay
  readable from its snapshot.

Removal never descends into a mount: while the workspace or HOME is still bound (its
sandbox's teardown has not finished) the folder is left alone and False returned. Blocking.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

_BOUND = ("workspace", "home")


def busy(root: Path) -> bool:
    """True while a mount is still in the folder (a sandbox teardown is pending)."""
    return any(os.path.ismount(root / name) for name in _BOUND)


def remove_sandbox_dir(root: Path) -> bool:
    """Remove ``root`` (a folder under ``<data>/sandboxes``) entirely; True if gone.

    Never follows symlinks out of it, never raises: a failure is logged and left for the
    operator (the folder is then reported, and removed by the next end of that session).
    """
    if not root.exists() and not root.is_symlink():
        return True
    if busy(root):
        log.warning("sandbox folder %s still has a mount; not removed (its teardown is pending)", root)
        return False
    try:
        if root.is_symlink():
            root.unlink()
        else:
            # The image first: it is the large part, and rmtree order is not ours.
            (root / "disk.img").unlink(missing_ok=True)
            shutil.rmtree(root)
    except OSError as exc:
        log.warning("sandbox folder %s not fully removed: %s", root, exc)
        return False
    return True
