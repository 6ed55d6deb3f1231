"""Workspace bundles (``GET/POST /api/sessions/:id/workspace``): tar.gz in and out.

Making a bundle never dereferences a symlink (Ash's ``tar -h`` would pack host files an
agent linked to): a symlink is stored as a symlink when its target stays inside the
workspace, and left out otherwise. ``.env*``, dependency and VCS folders are left out.

Applying a bundle checks every member first (names, types, link targets, sizes, then
``tarfile``'s ``data`` filter) and writes nothing if one is refused; it then writes each
member through :class:`~ashd.files.contained.Tree`, so a symlink the agent planted in the
workspace cannot redirect extraction. Everything blocks.
"""

from __future__ import annotations

import os
import posixpath
import stat
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from ashd.errors import BadRequest, PayloadTooLarge
from ashd.files.contained import READ_FLAGS, Parts, Tree, UnsafePath, parse_relative
from ashd.files.rules import bundle_skip, path_skipped
from ashd.snapshot.archive import ExactReader, contained_link_target, tar_info

GZIP_MAGIC = b"\x1f\x8b"
MAX_MEMBERS = 100_000


def _human(n: int) -> str:
    return f"{n / (1 << 20):.0f} MB"


def write_bundle(tree: Tree, dest: Path, max_bytes: int) -> int:
    """Write a tar.gz of the tree to ``dest``. Returns the content bytes packed.

    Raises PayloadTooLarge past ``max_bytes`` of file content (``dest`` is removed then),
    NotFound if the tree's root is missing.
    """
    try:
        with open(dest, "wb") as raw, tarfile.open("workspace.tar", fileobj=raw, mode="w:gz", compresslevel=6) as tar:
            return _add_tree(tar, tree, max_bytes)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise


def _add_tree(tar: tarfile.TarFile, tree: Tree, room: int) -> int:
    """Pack the tree's entries; returns the content bytes packed (at most ``room``)."""
    root = os.path.realpath(tree.root)
    total = 0
    for entry in tree.walk(bundle_skip):
        mode = entry.st.st_mode
        if stat.S_ISDIR(mode):
            tar.addfile(tar_info(entry.rel, tarfile.DIRTYPE, (mode & 0o777) | 0o700, entry.st.st_mtime))
        elif stat.S_ISLNK(mode):
            _add_link(tar, root, entry.rel, entry.name, entry.dir_fd, entry.st.st_mtime)
        elif stat.S_ISREG(mode):
            total += _add_file(tar, entry.rel, entry.name, entry.dir_fd, room - total)
    return total


def _add_link(tar: tarfile.TarFile, root: str, rel: str, name: str, dir_fd: int, mtime: float) -> None:
    try:
        linkname = os.readlink(name, dir_fd=dir_fd)
    except OSError:
        return
    target = contained_link_target(root, rel, linkname)
    if target is not None:
        info = tar_info(rel, tarfile.SYMTYPE, 0o777, mtime)
        info.linkname = target
        tar.addfile(info)


def _add_file(tar: tarfile.TarFile, rel: str, name: str, dir_fd: int, room: int) -> int:
    try:
        fd = os.open(name, READ_FLAGS, dir_fd=dir_fd)
    except OSError:  # gone, or swapped for a symlink or fifo since the walk saw it
        return 0
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return 0
        if st.st_size > room:
            raise PayloadTooLarge(
                "the workspace holds more than the bundle limit; download large files one by one "
                f"(GET /api/sessions/:id/files/<path>) or remove them (reached at {rel!r})"
            )
        info = tar_info(rel, tarfile.REGTYPE, st.st_mode & 0o777, st.st_mtime)
        info.size = st.st_size
        tar.addfile(info, ExactReader(f, st.st_size))
    return st.st_size


def rebundle(snapshot: Path, dest: Path, max_bytes: int, overlay: Tree | None = None) -> int:
    """A bundle made from a snapshot archive: the same members minus what bundles leave out.
    ``overlay`` (see ``ArchiveView``) replaces the members at its read-only paths.

    Raises PayloadTooLarge past ``max_bytes``, BadRequest if the snapshot is unreadable.
    """
    total = 0
    try:
        with tarfile.open(snapshot, mode="r:gz") as src, open(dest, "wb") as raw, \
                tarfile.open("workspace.tar", fileobj=raw, mode="w:gz", compresslevel=6) as out:
            for member in src:
                if path_skipped(member.name, bundle_skip) or not (member.isreg() or member.isdir() or member.issym()):
                    continue
                if overlay is not None and overlay.read_only(_name_parts(member.name)):
                    continue  # shown from the overlay instead
                if member.isreg():
                    total += member.size
                    if total > max_bytes:
                        raise PayloadTooLarge("the workspace snapshot holds more than the bundle limit; "
                                              "download large files one by one")
                    out.addfile(member, src.extractfile(member))
                else:
                    out.addfile(member)
            if overlay is not None:
                total += _add_tree(out, overlay, max_bytes - total)
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        dest.unlink(missing_ok=True)
        raise BadRequest(f"the session's snapshot cannot be read: {exc}") from None
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return total


def _name_parts(name: str) -> Parts:
    return tuple(p for p in name.split("/") if p not in ("", "."))


@dataclass(frozen=True)
class _Planned:
    parts: Parts
    member: tarfile.TarInfo


def check_bundle(archive: Path, dest: str, max_bytes: int) -> list[_Planned]:
    """Every member of ``archive``, checked; raises BadRequest (naming the member) for the
    first that is not a plain file, directory or contained symlink, PayloadTooLarge past
    ``max_bytes`` of content. ``dest`` is the live directory tarfile's data filter checks
    against."""
    plan: list[_Planned] = []
    seen: set[Parts] = set()
    links: set[Parts] = set()
    total = 0
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            for member in tar:
                if len(plan) >= MAX_MEMBERS:
                    raise BadRequest(f"the bundle holds more than {MAX_MEMBERS} entries")
                parts = _member_parts(member)
                if parts is None:
                    continue  # the archive's root entry "."
                if parts in seen:
                    raise BadRequest(f"bundle entry {member.name!r} appears twice")
                if any(parts[:i] in links for i in range(1, len(parts))):
                    raise BadRequest(f"bundle entry {member.name!r} lies behind a symlink of the bundle")
                _check_type(member, parts)
                if member.issym():
                    links.add(parts)
                total += member.size if member.isreg() else 0
                if total > max_bytes:
                    raise PayloadTooLarge(f"the bundle unpacks to more than {_human(max_bytes)}")
                try:
                    filtered = tarfile.data_filter(member, dest)
                except tarfile.FilterError as exc:
                    raise BadRequest(f"bundle entry {member.name!r} was refused: {exc}") from None
                seen.add(parts)
                plan.append(_Planned(parts, filtered))
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise BadRequest(f"bundle is not a valid tar.gz archive: {exc}") from None
    return plan


def _member_parts(member: tarfile.TarInfo) -> Parts | None:
    raw = member.name
    if raw in (".", "./"):
        return None
    try:
        return parse_relative(raw.rstrip("/"), f"bundle entry {raw!r}")
    except UnsafePath as exc:
        raise BadRequest(exc.message) from None


def _check_type(member: tarfile.TarInfo, parts: Parts) -> None:
    if member.isreg():
        if member.mode & (stat.S_ISUID | stat.S_ISGID):
            raise BadRequest(f"bundle entry {member.name!r} has setuid or setgid bits")
    elif member.issym():
        target = member.linkname
        lexical = posixpath.normpath(posixpath.join(posixpath.dirname("/".join(parts)), target))
        if not target or "\x00" in target or posixpath.isabs(target) or lexical == ".." \
                or lexical.startswith("../"):
            raise BadRequest(f"bundle symlink {member.name!r} points outside the workspace: {target!r}")
    elif not member.isdir():
        raise BadRequest(f"bundle entry {member.name!r} is not a file, directory or symlink "
                         "(hardlinks, devices and fifos are refused)")


def extract_bundle(archive: Path, tree: Tree, max_bytes: int) -> int:
    """Check the whole bundle, then write it into ``tree``. Returns the number of entries
    written: entries at the tree's read-only paths (the agent's bound files, which a bundle
    downloaded from ashd carries) are left out.

    Raises BadRequest / PayloadTooLarge before writing anything for a bad bundle; UnsafePath
    if the tree holds a symlink where the bundle puts a file or directory (entries before
    it are written by then).
    """
    plan = [item for item in check_bundle(archive, str(tree.root), max_bytes)
            if not tree.read_only(item.parts)]  # the agent's bound files stay as deployed
    with tarfile.open(archive, mode="r:gz") as tar:
        for item in plan:
            m = item.member
            if m.isdir():
                tree.make_dirs(item.parts)
            elif m.issym():
                tree.symlink(item.parts, m.linkname)
            else:
                src = tar.extractfile(m)
                assert src is not None
                with src:
                    tree.copy_from(item.parts, src, m.size, (m.mode or 0o644) & 0o777)
    return len(plan)
