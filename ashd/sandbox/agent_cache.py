"""Agent folders on a runner, by version: shipped once over the link, kept under the data dir.

A coordinator sends a runner the folder of an agent version the runner has not seen (a
tar.gz made with :func:`pack`, the snapshot archiver's contained format) in ``agent``
requests of at most :data:`CHUNK_BYTES` each (base64 in the link's JSON control messages,
far below the link's message limit, so one agent never holds up the link's other frames for
long); the runner assembles them in an :class:`AgentUpload` and extracts the whole with the
snapshot extractor (no member may escape, links stay inside, nothing but files, dirs and
contained links) under ``<data dir>/agent-cache/<agent id>.<version>``. A version's folder
never changes, so a cached copy is never refreshed.

The cache holds at most :data:`MAX_CACHE_BYTES` of agent folders: after each new version, the
least recently used ones go (a launch marks its version used) until it fits, never one a launch
holds (:meth:`AgentCache.hold`: a sandbox copies from its version at every start, so it holds
it while it is hosted). A launch whose version went asks for it again (``missing_agent``), so an
evicted version costs one more shipping.

Bounds, on both sides (docs/scale-out.md): an agent folder ships to runners when it packs to
at most :data:`MAX_ARCHIVE_BYTES` and holds at most :data:`MAX_CONTENT_BYTES` of files; a
larger one is refused at the coordinator before anything is sent (PayloadTooLarge: a
session create answers 413 with why), and a runner refuses an upload that announces more.
Blocking; any thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import stat
import tempfile
import threading
from collections import Counter
from pathlib import Path

from ashd.errors import PayloadTooLarge, SandboxFailed, SnapshotError, SnapshotTooLarge
from ashd.runnerlink.mux import MAX_MESSAGE_BYTES
from ashd.sandbox.launch_order import check_key
from ashd.snapshot.archive import create_archive, extract_archive

log = logging.getLogger(__name__)

MiB = 1024 * 1024
MAX_CACHE_BYTES = 2048 * MiB  # agent folders a runner keeps (least recently used go first)
MAX_ARCHIVE_BYTES = 32 * MiB  # the packed (tar.gz) agent folder a runner accepts
MAX_CONTENT_BYTES = 256 * MiB  # the agent folder's files, unpacked
CHUNK_BYTES = 4 * MiB  # one ``agent`` request's share of the archive (base64: ~5.4 MiB of JSON)
assert CHUNK_BYTES * 4 // 3 + 64 * 1024 < MAX_MESSAGE_BYTES  # a chunk always fits one link message


def pack(agent_dir: Path) -> bytes:
    """The agent folder as a tar.gz. Raises PayloadTooLarge past the bounds (it never will
    fit), SandboxFailed if it is unreadable."""
    with tempfile.TemporaryDirectory(prefix="ashd-agent-") as tmp:
        dest = Path(tmp) / "agent.tar.gz"
        try:
            create_archive(agent_dir, dest, max_bytes=MAX_CONTENT_BYTES)
        except SnapshotTooLarge as exc:
            raise PayloadTooLarge(f"agent folder {agent_dir} holds more than {MAX_CONTENT_BYTES // MiB} MiB of "
                                  "files, the most an agent shipped to runners may hold") from exc
        except (OSError, SnapshotError) as exc:
            raise SandboxFailed(f"cannot pack agent folder {agent_dir} for the runner: {exc}") from exc
        size = dest.stat().st_size
        if size > MAX_ARCHIVE_BYTES:
            raise PayloadTooLarge(f"agent folder {agent_dir} packs to {size} bytes, over the {MAX_ARCHIVE_BYTES // MiB}"
                                  " MiB an agent shipped to runners may take; make it smaller (large data belongs "
                                  "in the session's files)")
        return dest.read_bytes()


class AgentUpload:
    """One archive arriving in chunks (the runner's side). Raises SandboxFailed for an upload
    over :data:`MAX_ARCHIVE_BYTES`, a chunk out of order or past the announced total."""

    def __init__(self, root: Path, key: str, total: int) -> None:
        if not 0 < total <= MAX_ARCHIVE_BYTES:
            raise SandboxFailed(f"agent archive of {total} bytes refused: a runner takes 1 byte to "
                                f"{MAX_ARCHIVE_BYTES // MiB} MiB")
        self.key, self.total, self.received = check_key(key, "agent version"), total, 0
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, name = tempfile.mkstemp(prefix=".incoming-", suffix=".tar.gz", dir=root)
        self.path = Path(name)
        self._out = os.fdopen(fd, "wb")

    def add(self, offset: int, data: bytes) -> bool:
        """Append one chunk; True once the archive is complete (the file is closed then)."""
        if offset != self.received or not data or self.received + len(data) > self.total:
            raise SandboxFailed(f"agent archive chunk at {offset} ({len(data)} bytes) does not follow the "
                                f"{self.received} of {self.total} bytes received")
        self._out.write(data)
        self.received += len(data)
        if self.received == self.total:
            self._out.close()
            return True
        return False

    def discard(self) -> None:
        self._out.close()
        self.path.unlink(missing_ok=True)


class AgentCache:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()  # holds, and a folder taken away
        self._evicting = threading.Lock()  # one eviction at a time
        self._holds: Counter[str] = Counter()

    def path(self, key: str) -> Path | None:
        """The cached folder of ``key``, or None. A symlink in its place counts as absent."""
        target = self.root / check_key(key, "agent version")
        try:
            return target if stat.S_ISDIR(os.lstat(target).st_mode) else None
        except FileNotFoundError:
            return None

    def hold(self, key: str) -> Path | None:
        """The cached folder of ``key`` (None: not cached), marked used and kept from eviction
        until as many :meth:`release` calls."""
        with self._lock:
            folder = self.path(key)
            if folder is not None:
                self._holds[key] += 1
                with contextlib.suppress(OSError):
                    os.utime(folder)
            return folder

    def release(self, key: str) -> None:
        with self._lock:
            self._holds[key] -= 1
            if self._holds[key] <= 0:
                del self._holds[key]

    def put(self, key: str, archive: bytes) -> Path:
        """Extract ``archive`` as the folder of ``key`` (kept if another put won the race).
        Raises SandboxFailed for an unsafe or oversized archive."""
        upload = AgentUpload(self.root, key, len(archive))
        try:
            upload.add(0, archive)
            return self.put_upload(upload)
        finally:
            upload.discard()

    def put_upload(self, upload: AgentUpload) -> Path:
        """Extract a complete upload as the folder of its key (kept if another put won the
        race), then evict what no longer fits; the caller discards the upload. Raises
        SandboxFailed for an unsafe archive."""
        target = self.root / upload.key
        try:
            extract_archive(upload.path, target, max_bytes=MAX_CONTENT_BYTES)
        except SnapshotError as exc:
            if self.path(upload.key) is not None:
                return target  # another launch cached it first
            raise SandboxFailed(f"agent archive for {upload.key} refused: {exc}") from exc
        self.evict(keep=upload.key)
        return target

    def evict(self, keep: str = "") -> list[str]:
        """Remove the least recently used versions, none held and not ``keep``, until the
        cache holds at most :data:`MAX_CACHE_BYTES`; returns their keys."""
        with self._evicting:
            for entry in os.scandir(self.root):
                if entry.name.startswith(".evicted-"):  # one an interrupted eviction left
                    shutil.rmtree(entry.path, ignore_errors=True)
            folders = sorted((entry.stat(follow_symlinks=False).st_mtime, entry.name, _tree_bytes(Path(entry.path)))
                             for entry in os.scandir(self.root)
                             if not entry.name.startswith(".") and entry.is_dir(follow_symlinks=False))
            total, gone = sum(size for _, _, size in folders), []
            for _, key, size in folders:
                if total <= MAX_CACHE_BYTES:
                    break
                if key != keep and self._take_away(key):
                    total -= size
                    gone.append(key)
        if gone:
            log.info("agent cache over %d MiB: removed %s (least recently used)", MAX_CACHE_BYTES // MiB,
                     ", ".join(gone))
        return gone

    def _take_away(self, key: str) -> bool:
        """Move ``key``'s folder out of the cache unless a launch holds it, then remove it."""
        doomed = self.root / f".evicted-{secrets.token_hex(4)}-{key}"
        with self._lock:
            if self._holds[key]:
                return False
            try:
                os.rename(self.root / key, doomed)
            except FileNotFoundError:
                return False
        shutil.rmtree(doomed, ignore_errors=True)
        return True


def _tree_bytes(root: Path) -> int:
    """The bytes of the files under ``root`` (symlinks not followed)."""
    total = 0
    for here, _, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(here, name)).st_size
    return total
