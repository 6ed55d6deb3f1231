"""Contained file access under a root directory whose contents an untrusted agent controls.

The agent may create symlinks, hardlinks, fifos and swap them in while a request runs. So:

- a relative path from a user or an agent is checked first (:func:`parse_relative`: no
  absolute path, ``..``, NUL, backslash, empty name);
- it is then walked one component at a time with ``openat(dir_fd, name, O_DIRECTORY |
  O_NOFOLLOW)``; the last component is opened with ``O_NOFOLLOW`` too. A symlink anywhere on
  the way is refused (400), never followed, so nothing outside the root is read or written;
- writes go to a fresh temporary file in the target directory (``O_CREAT | O_EXCL``) that is
  renamed over the name, so an existing file, symlink or hardlink there is replaced, never
  written through;
- what ashd creates (files, directories) gets the owner of the root directory, so files put
  into a live sandbox's workspace (owned by the sandbox's uid, see ``sandbox/kit.py``) stay
  usable by the agent.

Every method blocks on file I/O; a :class:`Tree` holds no open descriptors between calls and
may be shared by threads.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from ashd.errors import BadRequest, NotFound

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255
MAX_DEPTH = 128
_CHUNK = 1 << 20

Parts = tuple[str, ...]


class UnsafePath(BadRequest):
    """A path that is malformed or would leave the root (through ``..`` or a symlink)."""


def parse_relative(raw: object, field: str = "path", *, allow_root: bool = False) -> Parts:
    """The components of a relative path, ``.`` and empty ones dropped.

    Raises UnsafePath for a non-string, an absolute path, ``..``, NUL, a backslash, an
    over-long path, or (unless ``allow_root``) a path naming the root itself.
    """
    if not isinstance(raw, str) or (raw == "" and not allow_root):
        raise UnsafePath(f"{field} must be a non-empty relative path")
    if "\x00" in raw:
        raise UnsafePath(f"{field} must not contain NUL bytes")
    if raw.startswith("/"):
        raise UnsafePath(f"{field} must be relative, not absolute: {raw!r}")
    if "\\" in raw:
        raise UnsafePath(f"{field} must use '/' as the separator: {raw!r}")
    pieces = raw.split("/")
    if ".." in pieces:
        raise UnsafePath(f"{field} must not contain '..': {raw!r}")
    parts = tuple(p for p in pieces if p not in ("", "."))
    if not parts and not allow_root:
        raise UnsafePath(f"{field} must name a file, not the root: {raw!r}")
    if len(raw.encode()) > MAX_PATH_BYTES or any(len(p.encode()) > MAX_NAME_BYTES for p in parts):
        raise UnsafePath(f"{field} is too long (at most {MAX_PATH_BYTES} bytes, {MAX_NAME_BYTES} per name)")
    return parts


@dataclass(frozen=True)
class FileInfo:
    path: str
    size: int
    mtime: float


@dataclass(frozen=True)
class Entry:
    """One entry met by :meth:`Tree.walk`; ``dir_fd`` is valid only until the walk moves on."""

    rel: str
    name: str
    dir_fd: int
    st: os.stat_result


def _shown(parts: Parts) -> str:
    return "/".join(parts) or "."


def _is_loop(exc: OSError) -> bool:
    return exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK)


def open_dir_nofollow(path: Path, label: str = "folder") -> int:
    """An O_DIRECTORY descriptor of the absolute ``path``, walked from ``/`` one component at
    a time with O_NOFOLLOW: a symlink anywhere on the path (a folder swapped for a link after
    it was checked, say) is refused, never followed. The caller closes the descriptor.

    Raises UnsafePath (a symlink or non-directory on the way, ``..``), NotFound.
    """
    if not path.is_absolute() or ".." in path.parts:
        raise UnsafePath(f"the {label} {path} must be an absolute path without '..'")
    fd = os.open("/", DIR_FLAGS)
    try:
        for i, name in enumerate(path.parts[1:]):
            try:
                nxt = os.open(name, DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                raise NotFound(f"the {label} {path} does not exist") from None
            except OSError as exc:
                if _is_loop(exc):
                    shown = "/" + "/".join(path.parts[1:i + 2])
                    raise UnsafePath(f"the {label} {path} goes through {shown}, a symlink or not a directory; "
                                     "ashd never follows symlinks here") from None
                raise
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


class Tree:
    """A directory holding agent-controlled files. With ``trusted_root`` (directories ashd
    made, like a session's workspace) the root's own path is trusted; without it (a deployed
    agent folder, which someone other than ashd may change) every component of the root's
    path is opened without following symlinks too (:func:`open_dir_nofollow`)."""

    def __init__(self, root: Path, label: str = "workspace", *, trusted_root: bool = True) -> None:
        self.root = Path(root)
        self.label = label
        self.trusted_root = trusted_root

    # -- reading ---------------------------------------------------------------------------

    def open_file(self, parts: Parts) -> tuple[BinaryIO, os.stat_result]:
        """A regular file opened for reading, and its stat. The caller closes it.

        Raises UnsafePath (symlink on the way or at the end), BadRequest (not a regular
        file), NotFound.
        """
        with self._parent(parts, create=False) as (pfd, _owner):
            try:
                fd = os.open(parts[-1], READ_FLAGS, dir_fd=pfd)
            except FileNotFoundError:
                raise NotFound(f"{_shown(parts)} does not exist in the {self.label}") from None
            except OSError as exc:
                if _is_loop(exc):
                    raise UnsafePath(f"{_shown(parts)} is a symlink; ashd never follows symlinks") from None
                raise
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise BadRequest(f"{_shown(parts)} is {kind}")
        return os.fdopen(fd, "rb"), st

    def walk(self, skip: Callable[[str], bool]) -> Iterator[Entry]:
        """Every entry under the root (depth first, sorted), not descending into symlinks
        or into names ``skip`` accepts. Directories are yielded before their contents."""
        with self._root_fd() as (root_fd, _owner):
            yield from self._walk(root_fd, "", skip, 0)

    def _walk(self, dir_fd: int, rel: str, skip: Callable[[str], bool], depth: int) -> Iterator[Entry]:
        if depth > MAX_DEPTH:
            raise BadRequest(f"the {self.label} nests deeper than {MAX_DEPTH} directories at {rel!r}")
        with os.scandir(dir_fd) as it:
            names = sorted(e.name for e in it)
        for name in names:
            if skip(name):
                continue
            child = f"{rel}/{name}" if rel else name
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            yield Entry(child, name, dir_fd, st)
            if stat.S_ISDIR(st.st_mode):
                try:
                    sub = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
                except OSError:  # gone, or swapped for a symlink since the stat
                    continue
                try:
                    yield from self._walk(sub, child, skip, depth + 1)
                finally:
                    os.close(sub)

    def list_files(self, skip: Callable[[str], bool]) -> list[FileInfo]:
        """Regular files under the root (symlinks and special files are left out)."""
        return [FileInfo(e.rel, e.st.st_size, e.st.st_mtime)
                for e in self.walk(skip) if stat.S_ISREG(e.st.st_mode)]

    def read_only(self, parts: Parts) -> bool:
        """True for a path this tree shows but never lets the API change (see ``bound.py``)."""
        return False

    # -- writing ---------------------------------------------------------------------------

    def write(self, parts: Parts, data: bytes | Iterable[bytes], mode: int = 0o644) -> int:
        """Create or replace the regular file ``parts`` (parents made as needed). Returns
        its size. Raises UnsafePath (symlink on the way or at the name), BadRequest (a
        directory is in the way)."""
        chunks = [data] if isinstance(data, bytes) else data
        with self._parent(parts, create=True) as (pfd, owner):
            name = parts[-1]
            self._refuse_link_or_dir(pfd, parts)
            tmp = f".{name[:200]}.{uuid.uuid4().hex[:12]}.ashd-tmp"
            fd = os.open(tmp, _CREATE_FLAGS, mode & 0o777, dir_fd=pfd)
            size = 0
            try:
                with os.fdopen(fd, "wb") as out:
                    _chown_fd(out.fileno(), owner)
                    for chunk in chunks:
                        out.write(chunk)
                        size += len(chunk)
                os.rename(tmp, name, src_dir_fd=pfd, dst_dir_fd=pfd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=pfd)
                raise
        return size

    def copy_from(self, parts: Parts, src: IO[bytes], size: int, mode: int = 0o644) -> int:
        """Write exactly ``size`` bytes read from ``src`` (a tar member, say) as ``parts``."""
        def chunks() -> Iterator[bytes]:
            left = size
            while left > 0:
                chunk = src.read(min(_CHUNK, left))
                if not chunk:
                    raise BadRequest(f"{_shown(parts)}: the source ended early")
                left -= len(chunk)
                yield chunk
        return self.write(parts, chunks(), mode)

    def make_dirs(self, parts: Parts) -> None:
        """Create the directory ``parts`` and its parents. Raises UnsafePath for a symlink."""
        with self._root_fd() as (root_fd, owner):
            fd = self._descend(root_fd, parts, create=True, owner=owner)
            if fd != root_fd:
                os.close(fd)

    def symlink(self, parts: Parts, target: str) -> None:
        """Create (or replace a file or symlink with) a symlink. The caller checks ``target``
        is contained; the link itself is never followed here."""
        with self._parent(parts, create=True) as (pfd, owner):
            self._refuse_dir(pfd, parts)
            tmp = f".{parts[-1][:200]}.{uuid.uuid4().hex[:12]}.ashd-tmp"
            os.symlink(target, tmp, dir_fd=pfd)
            try:
                if owner is not None:
                    os.chown(tmp, owner[0], owner[1], dir_fd=pfd, follow_symlinks=False)
                os.rename(tmp, parts[-1], src_dir_fd=pfd, dst_dir_fd=pfd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=pfd)
                raise

    def delete(self, parts: Parts) -> None:
        """Remove the regular file ``parts``. Raises NotFound, UnsafePath (a symlink),
        BadRequest (a directory)."""
        with self._parent(parts, create=False) as (pfd, _owner):
            self._refuse_link_or_dir(pfd, parts, missing_ok=False)
            try:
                os.unlink(parts[-1], dir_fd=pfd)
            except FileNotFoundError:
                raise NotFound(f"{_shown(parts)} does not exist in the {self.label}") from None

    # -- internals ---------------------------------------------------------------------------

    def _refuse_link_or_dir(self, pfd: int, parts: Parts, missing_ok: bool = True) -> None:
        try:
            st = os.stat(parts[-1], dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            if missing_ok:
                return
            raise NotFound(f"{_shown(parts)} does not exist in the {self.label}") from None
        if stat.S_ISLNK(st.st_mode):
            raise UnsafePath(f"{_shown(parts)} is a symlink; ashd never writes or deletes through symlinks")
        if stat.S_ISDIR(st.st_mode):
            raise BadRequest(f"{_shown(parts)} is a directory; name a file")

    def _refuse_dir(self, pfd: int, parts: Parts) -> None:
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISDIR(os.stat(parts[-1], dir_fd=pfd, follow_symlinks=False).st_mode):
                raise BadRequest(f"{_shown(parts)} is a directory; name a file")

    @contextlib.contextmanager
    def _root_fd(self) -> Iterator[tuple[int, tuple[int, int] | None]]:
        if not self.trusted_root:
            fd = open_dir_nofollow(self.root, self.label)
        else:
            try:
                fd = os.open(self.root, DIR_FLAGS)
            except (FileNotFoundError, NotADirectoryError):
                raise NotFound(f"the {self.label} does not exist") from None
        try:
            st = os.fstat(fd)
            mine = (os.geteuid(), os.getegid())
            owner = None if (st.st_uid, st.st_gid) == mine else (st.st_uid, st.st_gid)
            yield fd, owner
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _parent(self, parts: Parts, create: bool) -> Iterator[tuple[int, tuple[int, int] | None]]:
        """The open directory holding ``parts[-1]``."""
        assert parts, "a path names the root"
        with self._root_fd() as (root_fd, owner):
            fd = self._descend(root_fd, parts[:-1], create=create, owner=owner)
            try:
                yield fd, owner
            finally:
                if fd != root_fd:
                    os.close(fd)

    def _descend(self, root_fd: int, parts: Parts, *, create: bool, owner: tuple[int, int] | None) -> int:
        fd = root_fd
        for i, name in enumerate(parts):
            try:
                nxt = self._open_dir(fd, name, parts[: i + 1], create, owner)
            finally:
                if fd != root_fd:
                    os.close(fd)
            fd = nxt
        return fd

    def _open_dir(self, parent: int, name: str, shown: Parts, create: bool, owner: tuple[int, int] | None) -> int:
        for _attempt in range(3):
            try:
                return os.open(name, DIR_FLAGS, dir_fd=parent)
            except FileNotFoundError:
                if not create:
                    raise NotFound(f"{_shown(shown)} does not exist in the {self.label}") from None
                try:
                    os.mkdir(name, 0o755, dir_fd=parent)
                except FileExistsError:
                    continue  # made meanwhile (by the agent?): open it, still without following
                if owner is not None:
                    os.chown(name, owner[0], owner[1], dir_fd=parent, follow_symlinks=False)
            except OSError as exc:
                if _is_loop(exc):
                    raise UnsafePath(
                        f"{_shown(shown)} is a symlink or not a directory; ashd never follows symlinks"
                    ) from None
                raise
        raise BadRequest(f"{_shown(shown)} keeps changing; retry")


def _chown_fd(fd: int, owner: tuple[int, int] | None) -> None:
    if owner is not None:
        os.fchown(fd, owner[0], owner[1])
