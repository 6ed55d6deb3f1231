"""A cheap digest of a workspace, to skip a snapshot when nothing in it changed.

Snapshots run after every turn; most turns of a conversation touch no file, and building
and fsyncing an archive costs milliseconds that the next message would wait for. The
digest covers what the archive stores (entries that :func:`~ashd.snapshot.archive.skipped`
leaves in): relative path, type, size, inode, mtime and ctime in nanoseconds, and a link's
target. Nothing is followed or read.

File timestamps are coarse (the kernel's clock tick), so a file changed twice within one
tick keeps its mtime. As git does with its index ("racy" entries), a walk that sees any
entry changed within :data:`RACY_NS` of its start returns None: the caller saves anyway,
and the next walk, once the entries are old enough, gives a digest it can trust.

Pure apart from ``lstat``/``scandir``; blocks on the file system.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from ashd.snapshot.archive import skipped

RACY_NS = 1_000_000_000
MAX_ENTRIES = 200_000  # beyond this, walking costs about what archiving would: no digest


def workspace_digest(root: Path, now_ns: int | None = None) -> str | None:
    """The digest of ``root``'s tree, or None when it cannot be trusted (racy, too large,
    unreadable): then the caller must save."""
    started = time.time_ns() if now_ns is None else now_ns
    digest = hashlib.blake2b(digest_size=20)
    entries = 0
    stack = [(root, "")]
    try:
        while stack:
            folder, prefix = stack.pop()
            with os.scandir(folder) as listing:
                for entry in sorted(listing, key=lambda e: e.name):
                    if skipped(entry.name):
                        continue
                    entries += 1
                    st = entry.stat(follow_symlinks=False)
                    if entries > MAX_ENTRIES or max(st.st_mtime_ns, st.st_ctime_ns) > started - RACY_NS:
                        return None
                    rel = prefix + entry.name
                    link = os.readlink(entry.path) if entry.is_symlink() else ""
                    digest.update(f"{rel}\0{st.st_mode}\0{st.st_size}\0{st.st_ino}\0{st.st_mtime_ns}\0"
                                  f"{st.st_ctime_ns}\0{link}\n".encode("utf-8", "surrogateescape"))
                    if entry.is_dir(follow_symlinks=False):
                        stack.append((Path(entry.path), rel + "/"))
    except OSError:
        return None
    return digest.hexdigest()
