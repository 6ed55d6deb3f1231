"""Agent folders on a runner, by version: shipped once over the link, kept under the data dir.

A coordinator sends a runner the folder of an agent version the runner has not seen (a
tar.gz made with :func:`pack`, the snapshot archiver's contained format); the runner
extracts it with the snapshot extractor (no member may escape, links stay inside, nothing
but files, dirs and contained links) under ``<data dir>/agent-cache/<agent id>.<version>``.
A version's folder never changes, so a cached copy is never refreshed. Blocking; any thread.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from ashd.errors import SandboxFailed, SnapshotError
from ashd.sandbox.launch_order import check_key
from ashd.snapshot.archive import create_archive, extract_archive

MAX_ARCHIVE_BYTES = 32 * 1024 * 1024  # an agent folder travels in one link message
MAX_CONTENT_BYTES = 256 * 1024 * 1024


def pack(agent_dir: Path) -> bytes:
    """The agent folder as a tar.gz. Raises SandboxFailed if it is too big or unreadable."""
    with tempfile.TemporaryDirectory(prefix="ashd-agent-") as tmp:
        dest = Path(tmp) / "agent.tar.gz"
        try:
            create_archive(agent_dir, dest, max_bytes=MAX_CONTENT_BYTES)
        except (OSError, SnapshotError) as exc:
            raise SandboxFailed(f"cannot pack agent folder {agent_dir} for the runner: {exc}") from exc
        if dest.stat().st_size > MAX_ARCHIVE_BYTES:
            raise SandboxFailed(f"agent folder {agent_dir} is over {MAX_ARCHIVE_BYTES} bytes packed; "
                                "too big to ship to a runner")
        return dest.read_bytes()


class AgentCache:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path | None:
        """The cached folder of ``key``, or None. A symlink in its place counts as absent."""
        target = self.root / check_key(key, "agent version")
        try:
            return target if stat.S_ISDIR(os.lstat(target).st_mode) else None
        except FileNotFoundError:
            return None

    def put(self, key: str, archive: bytes) -> Path:
        """Extract ``archive`` as the folder of ``key`` (kept if another put won the race).
        Raises SandboxFailed for an unsafe or oversized archive."""
        if len(archive) > MAX_ARCHIVE_BYTES:
            raise SandboxFailed(f"agent archive of {len(archive)} bytes is over {MAX_ARCHIVE_BYTES}")
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        target = self.root / check_key(key, "agent version")
        fd, name = tempfile.mkstemp(prefix=".incoming-", suffix=".tar.gz", dir=self.root)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(archive)
            extract_archive(Path(name), target, max_bytes=MAX_CONTENT_BYTES)
        except SnapshotError as exc:
            if self.path(key) is not None:
                return target  # another launch cached it first
            raise SandboxFailed(f"agent archive for {key} refused: {exc}") from exc
        finally:
            os.unlink(name)
        return target
