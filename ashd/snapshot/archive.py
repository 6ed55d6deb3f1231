"""Make and restore tar.gz archives of a workspace, safely. Pure blocking functions.

Making (:func:`create_archive`) walks the workspace through directory file descriptors with
``O_NOFOLLOW``, so a symlink is never followed, not even one swapped in during the walk. A
symlink is stored as a symlink only if its target, fully resolved, stays inside the
workspace; any other link is dropped. Devices, fifos and sockets are skipped, and so are
Ash's skip list and ``*.sock *.lock *.pid``. Regular files are stored without setuid,
setgid or sticky bits and without ownership.

Restoring (:func:`extract_archive`) accepts only what :func:`create_archive` makes: regular
files, directories and symlinks with relative, contained targets. It rejects absolute names,
``..``, names repeated or reached through a symlink, hardlinks, devices, fifos and setuid or
setgid bits, then also applies ``tarfile``'s ``data`` filter. It extracts into a temporary
sibling of the target and renames it into place, so the target is either absent/empty or
complete.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

from ashd.errors import SnapshotError, SnapshotTooLarge, UnsafeArchive

SKIP_NAMES = frozenset(
    {"node_modules", ".git", "__pycache__", ".cache", ".npm", ".pnpm-store", ".yarn", ".venv", "venv", ".tmp", "tmp"}
)
SKIP_SUFFIXES = (".sock", ".lock", ".pid")
DEFAULT_MAX_BYTES = 1 << 30  # 1 GiB of file content, before compression
MAX_DEPTH = 256  # directory nesting; one open descriptor per level while walking
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(frozen=True)
class ArchiveStats:
    """What an archive holds: regular files, their content bytes, directories and symlinks."""

    files: int = 0
    bytes: int = 0
    dirs: int = 0
    symlinks: int = 0
    dropped_links: int = 0  # symlinks left out because they resolve outside the workspace


def skipped(name: str) -> bool:
    """True for entries a snapshot never holds (Ash's list), whatever their type."""
    return name in SKIP_NAMES or name.endswith(SKIP_SUFFIXES)


Room = Callable[[int], None]
"""Asked before each write of n bytes to the archive; raises (e.g. SnapshotNoRoom) to stop it."""


class _Metered:
    """A writable file that asks ``room`` before every write."""

    def __init__(self, raw: BinaryIO, room: Room) -> None:
        self._raw, self._room = raw, room

    def write(self, data: bytes) -> int:
        self._room(len(data))
        return self._raw.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


def create_archive(workspace: Path, dest: Path, *, max_bytes: int = DEFAULT_MAX_BYTES,
                   room: Room | None = None) -> ArchiveStats:
    """Write a tar.gz of ``workspace`` to ``dest`` (created or truncated).

    Blocks (reads the whole workspace). Thread-safe for distinct ``dest`` paths. The workspace
    should be quiescent: a file changing meanwhile may be stored torn (its size is fixed when
    it is opened; a file that shrinks is padded with NUL bytes).
    ``room`` (if given) is asked before every write to ``dest`` and may stop the archive.
    Raises SnapshotTooLarge past ``max_bytes`` of file content, SnapshotError if the
    workspace is not a directory or nests deeper than MAX_DEPTH, OSError on I/O errors;
    ``dest`` is removed on any error.
    """
    root = os.path.realpath(workspace)
    try:
        root_fd = os.open(root, _OPEN_DIR)
    except (FileNotFoundError, NotADirectoryError):
        raise SnapshotError(f"workspace {workspace} is not a directory") from None
    try:
        with open(dest, "wb") as raw, tarfile.open(fileobj=cast(BinaryIO, _Metered(raw, room)) if room else raw,
                                                   mode="w:gz", compresslevel=6) as tar:
            walker = _Walker(root, tar, max_bytes)
            walker.add_dir(root_fd, "", 0)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    finally:
        os.close(root_fd)
    return walker.stats


class _Walker:
    """One walk of a workspace into a tar stream (fd-relative, never following links)."""

    def __init__(self, root: str, tar: tarfile.TarFile, max_bytes: int) -> None:
        self.root, self.tar, self.max_bytes = root, tar, max_bytes
        self.stats = ArchiveStats()

    def add_dir(self, dir_fd: int, rel: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise SnapshotError(f"workspace nests deeper than {MAX_DEPTH} directories at {rel!r}")
        with os.scandir(dir_fd) as entries:
            names = sorted(e.name for e in entries)
        for name in names:
            if skipped(name):
                continue
            child = posixpath.join(rel, name) if rel else name
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:  # removed while we walk
                continue
            if stat.S_ISDIR(st.st_mode):
                self._add_subdir(dir_fd, name, child, st, depth)
            elif stat.S_ISREG(st.st_mode):
                self._add_file(dir_fd, name, child)
            elif stat.S_ISLNK(st.st_mode):
                self._add_symlink(dir_fd, name, child, st)
            # devices, fifos and sockets are never stored

    def _add_subdir(self, dir_fd: int, name: str, rel: str, st: os.stat_result, depth: int) -> None:
        try:
            fd = os.open(name, _OPEN_DIR, dir_fd=dir_fd)
        except OSError:  # gone, or swapped for a symlink since the stat
            return
        try:
            self._emit(tar_info(rel, tarfile.DIRTYPE, (st.st_mode & 0o777) | 0o700, st.st_mtime))
            self.stats = _bump(self.stats, dirs=1)
            self.add_dir(fd, rel, depth + 1)
        finally:
            os.close(fd)

    def _add_file(self, dir_fd: int, name: str, rel: str) -> None:
        try:
            fd = os.open(name, _OPEN_FILE, dir_fd=dir_fd)
        except OSError:  # gone, or swapped for a symlink/fifo since the stat
            return
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                return
            if self.stats.bytes + st.st_size > self.max_bytes:
                raise SnapshotTooLarge(
                    f"the workspace holds more than the snapshot limit of {_human(self.max_bytes)} "
                    f"(reached at {rel!r}); remove large files, or raise snapshot.max_bytes "
                    "(ASH_SNAPSHOT_MAX_BYTES)", self.max_bytes)
            info = tar_info(rel, tarfile.REGTYPE, st.st_mode & 0o777, st.st_mtime)
            info.size = st.st_size
            self._emit(info, ExactReader(f, st.st_size))
        self.stats = _bump(self.stats, files=1, bytes=st.st_size)

    def _add_symlink(self, dir_fd: int, name: str, rel: str, st: os.stat_result) -> None:
        try:
            linkname = os.readlink(name, dir_fd=dir_fd)
        except OSError:
            return
        target = contained_link_target(self.root, rel, linkname)
        if target is None:
            self.stats = _bump(self.stats, dropped_links=1)
            return
        info = tar_info(rel, tarfile.SYMTYPE, 0o777, st.st_mtime)
        info.linkname = target
        self._emit(info)
        self.stats = _bump(self.stats, symlinks=1)

    def _emit(self, info: tarfile.TarInfo, fileobj: ExactReader | None = None) -> None:
        self.tar.addfile(info, fileobj)


def contained_link_target(root: str, rel: str, linkname: str) -> str | None:
    """The target to store for the link at ``rel`` (relative to the real path ``root``), or None.

    None when the link, resolved on the live filesystem through every hop, ends outside the
    workspace. A relative target that stays inside lexically is kept as written; any other
    target that resolves inside is rewritten relative to the link's directory.
    """
    link_path = os.path.join(root, rel)
    resolved = os.path.realpath(link_path)
    if not _inside(resolved, root):
        return None
    if not os.path.isabs(linkname):
        lexical = posixpath.normpath(posixpath.join(posixpath.dirname(rel), linkname))
        if lexical != ".." and not lexical.startswith("../") and not lexical.startswith("/"):
            return linkname
    return os.path.relpath(resolved, os.path.dirname(link_path))


def extract_archive(archive: Path, target: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> ArchiveStats:
    """Restore ``archive`` as the directory ``target``, which must be absent or empty.

    Blocks. Extracts into a temporary sibling of ``target`` and renames it into place; on any
    error the sibling is removed and ``target`` is left as it was.
    Raises UnsafeArchive for a member that could escape or is not a plain file, directory or
    contained symlink (also when only tarfile's ``data`` filter catches it); SnapshotTooLarge
    past ``max_bytes`` of content; SnapshotError if ``target`` is not empty, the archive is
    corrupt, or on I/O errors.
    """
    if target.is_symlink() or (target.exists() and (not target.is_dir() or any(target.iterdir()))):
        raise SnapshotError(f"restore target {target} exists and is not an empty directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.restore-", dir=target.parent))
    guard = _MemberGuard(max_bytes)
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            tar.extractall(tmp, filter=guard.filter)  # noqa: S202  (every member checked, then data_filter)
        if target.is_dir():
            tmp.chmod(stat.S_IMODE(target.stat().st_mode))
        os.rename(tmp, target)  # atomically replaces an empty directory
    except tarfile.FilterError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UnsafeArchive(f"snapshot archive {archive} was refused by tarfile's data filter: {exc}") from None
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SnapshotError(f"snapshot archive {archive} is corrupt or not a tar.gz: {exc}") from None
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SnapshotError(f"could not restore into {target}: {exc}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return guard.stats


class _MemberGuard:
    """ashd's own member checks, run before tarfile's ``data`` filter on each member."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.stats = ArchiveStats()
        self.seen: set[str] = set()
        self.links: set[str] = set()

    def filter(self, member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
        name = self._check_name(member)
        if name is None:  # the archive's root entry "."
            return None
        if member.isreg():
            if member.mode & (stat.S_ISUID | stat.S_ISGID):
                raise UnsafeArchive(f"archive member {member.name!r} has setuid or setgid bits")
            if self.stats.bytes + member.size > self.max_bytes:
                raise SnapshotTooLarge(f"archive holds more than the snapshot limit of {_human(self.max_bytes)}",
                                       self.max_bytes)
            self.stats = _bump(self.stats, files=1, bytes=member.size)
        elif member.isdir():
            self.stats = _bump(self.stats, dirs=1)
        elif member.issym():
            self._check_link(member, name)
            self.links.add(name)
            self.stats = _bump(self.stats, symlinks=1)
        else:
            raise UnsafeArchive(f"archive member {member.name!r} is not a file, directory or symlink")
        self.seen.add(name)
        return tarfile.data_filter(member, dest)

    def _check_name(self, member: tarfile.TarInfo) -> str | None:
        raw = member.name
        if raw.startswith("/") or "\x00" in raw:
            raise UnsafeArchive(f"archive member {raw!r} has an absolute name")
        parts = raw.split("/")
        while parts and parts[0] == ".":
            parts.pop(0)
        if not parts:
            return None
        if any(p in ("", ".", "..") for p in parts):
            raise UnsafeArchive(f"archive member {raw!r} is not a plain relative path")
        name = "/".join(parts)
        if name in self.seen:
            raise UnsafeArchive(f"archive member {raw!r} appears twice")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in self.links:
                raise UnsafeArchive(f"archive member {raw!r} lies behind a symlink")
        return name

    @staticmethod
    def _check_link(member: tarfile.TarInfo, name: str) -> None:
        lexical = posixpath.normpath(posixpath.join(posixpath.dirname(name), member.linkname))
        if posixpath.isabs(member.linkname) or lexical == ".." or lexical.startswith("../"):
            raise UnsafeArchive(f"archive symlink {member.name!r} points outside: {member.linkname!r}")


class ExactReader:
    """Reads exactly ``size`` bytes: truncates growth, pads shrinkage with NULs."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self.f, self.left = f, size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 or n > self.left else n
        data = self.f.read(n)
        self.left -= n
        return data + b"\0" * (n - len(data))


def tar_info(name: str, kind: bytes, mode: int, mtime: float) -> tarfile.TarInfo:
    """A member header with no owner: archives never carry host uids or names."""
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = kind, mode, int(mtime)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _bump(stats: ArchiveStats, **add: int) -> ArchiveStats:
    return ArchiveStats(**{k: getattr(stats, k) + add.get(k, 0) for k in stats.__dataclass_fields__})


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _human(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"
