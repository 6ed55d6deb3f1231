"""Build workspace trees and describe them without following symlinks."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

BINARY = bytes(range(256)) * 64 + b"\x00\xff" * 1000
SECRET = b"TOP-SECRET-MARKER-7f3a"


def make_workspace(root: Path) -> Path:
    """Nested dirs, empty dirs, binary, unicode and executable files, symlinks inside."""
    (root / "src" / "pkg" / "deep").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "src" / "nested-empty" / "also-empty").mkdir(parents=True)
    (root / "CLAUDE.md").write_text("# agent\n")
    (root / "src" / "pkg" / "deep" / "data.bin").write_bytes(BINARY)
    (root / "src" / "main.py").write_text("print('hi')\n")
    (root / "zero-length").write_bytes(b"")
    (root / "ünïcödé 目录").mkdir()
    (root / "ünïcödé 目录" / "naïve 文件 🎉.txt").write_text("unicode ✓", encoding="utf-8")
    run = root / "run.sh"
    run.write_text("#!/bin/sh\necho ok\n")
    run.chmod(0o755)
    os.symlink("src/main.py", root / "link-to-file")
    os.symlink("pkg/deep", root / "src" / "link-to-dir")
    os.symlink("../CLAUDE.md", root / "src" / "link-up-inside")
    os.symlink("does-not-exist", root / "dangling")
    return root


def describe(root: Path) -> dict[str, tuple[object, ...]]:
    """{relative path: ("dir",) | ("file", bytes, executable) | ("link", target)}; never follows links."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir",)
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("file", path.read_bytes(), bool(st.st_mode & 0o100))
            else:
                out[rel] = ("special",)
    return out


def tar_members(archive: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(archive, "r:gz") as tar:
        return {m.name: m for m in tar.getmembers()}


def raw_tar_bytes(archive: Path) -> bytes:
    """The uncompressed tar stream, to search for content that must not be in it."""
    import gzip

    return gzip.decompress(archive.read_bytes())


def craft(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    """Write a tar.gz holding exactly these members (for malicious-archive tests)."""
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def member(name: str, kind: bytes = tarfile.REGTYPE, *, linkname: str = "", mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, mode
    return info
