"""Reading a deployed agent folder without ever following a symlink (blocking I/O).

An agent folder deployed by server path stays where it is (``ashd/files/agent_path.py``), and
whoever may write there could swap a component of its path, or a file in it, for a symlink
after the deploy. So every read of an agent folder goes through a :class:`Tree` whose root is
opened component by component with O_NOFOLLOW (``trusted_root=False``): agent file reads
and listings, the copy into a new session's workspace, the read-only policy files
(``.claude/``, ``.mcp.json``), ``.ashd/sandbox.json`` and the instructions (``CLAUDE.md``).
Symlinks inside the folder are copied as links (they resolve inside the sandbox, not on the
host) and never read through.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

from ashd.errors import AshError, BadRequest
from ashd.files.contained import READ_FLAGS, Parts, Tree

INSTRUCTIONS = "CLAUDE.md"
MAX_INSTRUCTIONS_BYTES = 1 << 20


def agent_tree(path: Path | str) -> Tree:
    """The deployed folder at ``path`` (an absolute path; a relative one is taken from the
    current directory, like the rest of ashd's data dir paths)."""
    return Tree(Path(os.path.abspath(path)), "agent folder", trusted_root=False)


def instructions(path: Path | str) -> str | None:
    """The deployed folder's CLAUDE.md (None: missing, a symlink, or not a regular file).

    These are a session's instructions whenever its options carry no ``systemPrompt``: the
    system prompt, and the ``/workspace/CLAUDE.md`` the CLI loads (bound read-only, see
    ``sandbox/kit.py``). Never the workspace's copy, which the agent could have edited.
    """
    data = read_small(agent_tree(path), (INSTRUCTIONS,), MAX_INSTRUCTIONS_BYTES)
    return None if data is None else data.decode(errors="replace")


def read_small(tree: Tree, parts: Parts, limit: int) -> bytes | None:
    """A regular file's content; None when it is missing, a symlink or not a regular file.
    Raises BadRequest when it is larger than ``limit`` bytes, OSError on I/O errors."""
    try:
        f, st = tree.open_file(parts)
    except AshError:
        return None
    with f:
        if st.st_size > limit:
            raise BadRequest(f"{'/'.join(parts)} in the agent folder is larger than {limit} bytes")
        return f.read(limit + 1)[:limit]


def copy_out(tree: Tree, dest: Path, skip: Callable[[str], bool]) -> None:
    """Copy the folder into the new directory ``dest`` (which must not exist): directories,
    regular files and symlinks (as links); anything else, and names ``skip`` accepts, left
    out. Raises OSError, or an AshError from the tree (a symlink on the folder's path)."""
    dest.mkdir(mode=0o755)
    for entry in tree.walk(skip):
        target = dest / entry.rel
        mode = entry.st.st_mode
        if stat.S_ISDIR(mode):
            target.mkdir(mode=0o755)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(entry.name, dir_fd=entry.dir_fd), target)
        elif stat.S_ISREG(mode):
            _copy_file(entry.dir_fd, entry.name, target, stat.S_IMODE(mode))


def _copy_file(dir_fd: int, name: str, target: Path, mode: int) -> None:
    try:
        fd = os.open(name, READ_FLAGS, dir_fd=dir_fd)
    except OSError:
        return  # gone, or swapped for a link or fifo since the walk saw it: left out
    with os.fdopen(fd, "rb") as src:
        if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
            return
        out_fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         (mode & 0o777) | 0o600)
        with os.fdopen(out_fd, "wb") as out:
            shutil.copyfileobj(src, out)
