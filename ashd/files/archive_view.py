"""A read-only view of a session's snapshot archive (a tar.gz ashd made), for sessions with no
live sandbox. Nothing is extracted to disk: members are listed and read from the archive.

Blocking (gzip), and a tar.gz is read sequentially: finding one member reads the archive up
to it. Member names are checked like user paths; symlinks are reported, never resolved.
"""

from __future__ import annotations

import posixpath
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, BinaryIO, cast

from ashd.errors import BadRequest, NotFound, SnapshotError
from ashd.files.bound import BoundTree
from ashd.files.contained import FileInfo, Parts, UnsafePath
from ashd.files.rules import path_skipped


def _clean(name: str) -> str | None:
    """The member's relative name, or None for one that is not a plain relative path."""
    if name.startswith("/") or "\x00" in name:
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return posixpath.join(*parts)


class _MemberFile:
    """A member's stream that also closes its archive."""

    def __init__(self, tar: tarfile.TarFile, stream: IO[bytes]) -> None:
        self._tar, self._stream = tar, stream

    def read(self, n: int = -1) -> bytes:
        return self._stream.read(n)

    def close(self) -> None:
        self._stream.close()
        self._tar.close()


class ArchiveView:
    """The files of one archive file on disk (the caller owns and removes it).

    ``overlay``: the agent's read-only files a sandbox of this session gets bound (a
    :class:`BoundTree` over an empty root); shown instead of the archive's members there.
    """

    def __init__(self, archive: Path, overlay: BoundTree | None = None) -> None:
        self.archive = archive
        self.overlay = overlay

    def _open(self) -> tarfile.TarFile:
        try:
            return tarfile.open(self.archive, mode="r:gz")
        except (tarfile.TarError, OSError, zlib.error) as exc:
            raise SnapshotError(f"the session's snapshot cannot be read: {exc}") from None

    def list_files(self, skip: Callable[[str], bool]) -> list[FileInfo]:
        """Regular files whose path has no skipped component. Raises SnapshotError."""
        out: list[FileInfo] = []
        with self._open() as tar:
            try:
                for member in tar:
                    name = _clean(member.name)
                    if name is None or not member.isreg() or path_skipped(name, skip) or self._bound(name):
                        continue
                    out.append(FileInfo(name, member.size, float(member.mtime)))
            except (tarfile.TarError, EOFError, zlib.error) as exc:
                raise SnapshotError(f"the session's snapshot is corrupt: {exc}") from None
        if self.overlay is not None:
            out = sorted(out + self.overlay.list_files(skip), key=lambda info: info.path)
        return out

    def _bound(self, name: str) -> bool:
        return self.overlay is not None and self.overlay.read_only(tuple(name.split("/")))

    def open_file(self, parts: Parts) -> tuple[BinaryIO, int, float]:
        """The member ``parts`` as a stream (closing it closes the archive), its size and
        mtime. Raises NotFound, UnsafePath (a symlink), BadRequest (a directory)."""
        if self.overlay is not None and self.overlay.read_only(parts):
            f, st = self.overlay.open_file(parts)
            return f, st.st_size, st.st_mtime
        wanted = "/".join(parts)
        tar = self._open()
        try:
            for member in tar:
                if _clean(member.name) != wanted:
                    continue
                if member.issym() or member.islnk():
                    raise UnsafePath(f"{wanted} is a symlink; ashd never follows symlinks")
                if not member.isreg():
                    raise BadRequest(f"{wanted} is a directory; name a file")
                stream = tar.extractfile(member)
                assert stream is not None
                return cast(BinaryIO, _MemberFile(tar, stream)), member.size, float(member.mtime)
        except (tarfile.TarError, EOFError, zlib.error) as exc:
            tar.close()
            raise SnapshotError(f"the session's snapshot is corrupt: {exc}") from None
        except BaseException:
            tar.close()
            raise
        tar.close()
        raise NotFound(f"{wanted} does not exist in the session's snapshot")
