"""A live workspace as the files API uses it, wherever the sandbox runs.

:class:`LiveFiles` is what the session files routes do to a running sandbox's workspace:
list, read, write, delete, bundle, apply a bundle. :class:`LocalFiles` does it on this
machine's disk through :class:`~ashd.files.contained.Tree` (standalone, and a runner serving
a coordinator's request: ``ashd/sandbox/workspace_server.py``); a coordinator's
:class:`~ashd.sandbox.remote_files.RemoteFiles` asks the runner that hosts the sandbox, which
answers with a :class:`LocalFiles` of its own, so containment, symlink refusal, limits and
errors are the same code everywhere.

Every method blocks (file I/O, or a request over the runner link); call them off the loop.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from ashd.files import bundle
from ashd.files.agent_binds import PLAN_NAME, bound_sources
from ashd.files.bound import BoundTree
from ashd.files.contained import FileInfo, Parts, Tree, UnsafePath
from ashd.files.rules import listing_skip


class Readable(Protocol):
    def read(self, n: int = -1) -> bytes: ...

    def close(self) -> None: ...


class LiveFiles(Protocol):
    """A running sandbox's workspace (blocking; any thread)."""

    def list_files(self, include_hidden: bool) -> list[FileInfo]:
        """Regular files, in walk order. Raises NotFound if the workspace is gone."""
        ...

    def open_file(self, parts: Parts) -> tuple[Readable, int]:
        """A file opened for reading and its size; the caller closes it. Raises UnsafePath
        (a symlink), BadRequest (not a regular file), NotFound."""
        ...

    def write(self, parts: Parts, content: bytes) -> int:
        """Create or replace one file; its size. Raises UnsafePath, BadRequest, NotFound, OSError."""
        ...

    def delete(self, parts: Parts) -> None:
        """Remove one file. Raises NotFound, UnsafePath, BadRequest."""
        ...

    def write_bundle(self, dest: Path, max_bytes: int) -> None:
        """The workspace as a tar.gz at ``dest``. Raises PayloadTooLarge past ``max_bytes``."""
        ...

    def apply_bundle(self, archive: Path, max_bytes: int) -> int:
        """Unpack the tar.gz ``archive`` into the workspace; entries written. Raises
        BadRequest / PayloadTooLarge (nothing written), UnsafePath (entries before it written)."""
        ...


RemoteLookup = Callable[[str, str], "LiveFiles | None"]
"""(runner id, sandbox id) -> that runner's live workspace of the sandbox, or None when the
runner is not linked or does not host it (blocking)."""


def tree_at(root: Path) -> Tree | None:
    """The workspace of the sandbox dir ``root`` with the agent's read-only files over it, or
    None when there is none to serve (no dir, or a disk image not mounted yet)."""
    workspace = root / "workspace"
    if not workspace.is_dir() or workspace.is_symlink():
        return None
    if (root / "disk.img").exists() and not os.path.ismount(workspace):
        return None  # a disk-image sandbox not mounted (yet): the dir is only a placeholder
    binds = bound_sources(root / PLAN_NAME)
    return BoundTree(workspace, binds) if binds else Tree(workspace)


class LocalFiles:
    """:class:`LiveFiles` on a :class:`Tree` on this machine."""

    def __init__(self, tree: Tree) -> None:
        self.tree = tree

    def list_files(self, include_hidden: bool) -> list[FileInfo]:
        return self.tree.list_files(listing_skip(include_hidden))

    def open_file(self, parts: Parts) -> tuple[Readable, int]:
        f, st = self.tree.open_file(parts)
        return f, st.st_size

    def write(self, parts: Parts, content: bytes) -> int:
        return self.tree.write(parts, content)

    def write_from(self, parts: Parts, path: Path, size: int) -> int:
        """Write ``size`` bytes of the daemon-owned file ``path`` as ``parts`` (a spooled upload)."""
        with open(path, "rb") as src:
            return self.tree.copy_from(parts, src, size)

    def delete(self, parts: Parts) -> None:
        self.tree.delete(parts)

    def write_bundle(self, dest: Path, max_bytes: int) -> None:
        bundle.write_bundle(self.tree, dest, max_bytes)

    def apply_bundle(self, archive: Path, max_bytes: int) -> int:
        try:
            return bundle.extract_bundle(archive, self.tree, max_bytes)
        except UnsafePath as exc:
            raise UnsafePath(f"{exc.message} (entries before it were written)") from None
