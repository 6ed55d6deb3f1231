"""A live workspace as the agent sees it: the deployed agent's read-only files on top.

bwrap binds read-only copies of some agent files over the workspace (the table in
``ashd/files/agent_binds.py``); on the host, the workspace holds whatever is under the
bind, often an empty placeholder. :class:`BoundTree` lists, reads and bundles the bound
copies at those names instead, and refuses to change them (the agent cannot either).

Blocking like :class:`~ashd.files.contained.Tree`; the bound copies are ashd's own
(root-owned, written by the kit), but symlinks in them are still never followed.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, BinaryIO

from ashd.errors import BadRequest, NotFound
from ashd.files.contained import DIR_FLAGS, Entry, Parts, Tree


class ReadOnlyPath(BadRequest):
    """A write to a file the sandbox binds read-only from the deployed agent."""


class BoundTree(Tree):
    """The workspace ``root`` with ``binds`` (top-level name -> host copy) shown over it."""

    def __init__(self, root: Path, binds: Mapping[str, Path]) -> None:
        super().__init__(root)
        self.binds = dict(binds)

    def read_only(self, parts: Parts) -> bool:
        return bool(parts) and parts[0] in self.binds

    # -- reading ---------------------------------------------------------------------------

    def open_file(self, parts: Parts) -> tuple[BinaryIO, os.stat_result]:
        if not self.read_only(parts):
            return super().open_file(parts)
        source = self.binds[parts[0]]
        shown = "/".join(parts)
        if source.is_dir():
            if len(parts) == 1:
                raise BadRequest(f"{shown} is a directory")
            return Tree(source, self.label).open_file(parts[1:])
        if len(parts) > 1:
            raise NotFound(f"{shown} does not exist in the {self.label}")
        return Tree(source.parent, self.label).open_file((source.name,))

    def walk(self, skip: Callable[[str], bool]) -> Iterator[Entry]:
        """The workspace's entries with each bound name's replaced by its copy's, in order."""
        todo = sorted(name for name in self.binds if not skip(name))
        for entry in super().walk(skip):
            top = entry.rel.partition("/")[0]
            while todo and todo[0] <= top:
                yield from self._bound_entries(todo.pop(0), skip)
            if top not in self.binds:
                yield entry
        for name in todo:
            yield from self._bound_entries(name, skip)

    def _bound_entries(self, name: str, skip: Callable[[str], bool]) -> Iterator[Entry]:
        source = self.binds[name]
        try:
            parent = os.open(source.parent, DIR_FLAGS)
        except OSError:
            return  # the sandbox stopped meanwhile
        try:
            try:
                st = os.stat(source.name, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                return
            yield Entry(name, source.name, parent, st)
            if stat.S_ISDIR(st.st_mode):
                for entry in Tree(source, self.label).walk(skip):
                    yield Entry(f"{name}/{entry.rel}", entry.name, entry.dir_fd, entry.st)
        finally:
            os.close(parent)

    # -- writing: refused at bound names ---------------------------------------------------

    def _refuse(self, parts: Parts) -> None:
        if self.read_only(parts):
            raise ReadOnlyPath(
                f"{'/'.join(parts)} is read-only: the sandbox binds {parts[0]} from the deployed agent; "
                "change it in the agent folder and redeploy the agent"
            )

    def write(self, parts: Parts, data: bytes | Iterable[bytes], mode: int = 0o644) -> int:
        self._refuse(parts)
        return super().write(parts, data, mode)

    def copy_from(self, parts: Parts, src: IO[bytes], size: int, mode: int = 0o644) -> int:
        self._refuse(parts)
        return super().copy_from(parts, src, size, mode)

    def make_dirs(self, parts: Parts) -> None:
        self._refuse(parts)
        super().make_dirs(parts)

    def symlink(self, parts: Parts, target: str) -> None:
        self._refuse(parts)
        super().symlink(parts, target)

    def delete(self, parts: Parts) -> None:
        self._refuse(parts)
        super().delete(parts)
