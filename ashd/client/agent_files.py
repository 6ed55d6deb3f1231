"""Collect an agent folder for upload (``POST /api/agents {name, files}``).

Contract of :func:`collect_agent_files`:

* the folder must contain a regular ``CLAUDE.md`` at its top;
* skipped by name, at any depth: the folders ``.git``, ``node_modules``,
  ``__pycache__``, ``.venv``, ``venv``, ``.cache``; the entries ``.env`` and
  ``.env.*`` (secrets stay local); ``*.sock``, ``*.lock``, ``*.pid``;
  anything that is not a regular file or folder (FIFOs, sockets, devices);
* symlinks are never followed out of the folder: a link whose target lies
  outside it (or does not exist) is refused with :class:`AgentFolderError`.
  A link to a file inside the folder is uploaded with the target's content,
  unless the target is itself skipped (``conf -> .env``); a link to a folder
  inside it is skipped (its target is uploaded anyway, and not following it
  rules out cycles);
* paths are relative POSIX paths, sorted; content is base64;
* the total size of the uploaded files is capped (default 50 MiB).

Blocks on file I/O; raises only :class:`AgentFolderError` (with a sentence
naming the offending path) for problems with the folder.
"""

from __future__ import annotations

import base64
import fnmatch
import os
import stat
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MAX_TOTAL_BYTES = 50 * 1024 * 1024
SKIPPED_DIRS = frozenset({".git", "node_modules", "__pycache__", ".venv", "venv", ".cache"})
SKIPPED_PATTERNS = (".env", ".env.*", "*.sock", "*.lock", "*.pid")
REQUIRED_FILE = "CLAUDE.md"


class AgentFolderError(ValueError):
    """The folder cannot be uploaded as an agent; the message says why."""


@dataclass(frozen=True)
class AgentFile:
    """One file to upload: relative POSIX ``path`` and base64 ``content``."""

    path: str
    content: str
    size: int

    def to_json(self) -> dict[str, str]:
        """The ``{"path", "content"}`` item Ash's deploy route expects."""
        return {"path": self.path, "content": self.content}


def is_skipped(name: str) -> bool:
    """True for names that are never uploaded (see module docstring)."""
    if name in SKIPPED_DIRS:
        return True
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in SKIPPED_PATTERNS)


def collect_agent_files(
    folder: str | os.PathLike[str], max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES
) -> list[AgentFile]:
    """Return the files of ``folder`` to upload, sorted by path."""
    root = Path(folder).resolve()
    if not root.is_dir():
        raise AgentFolderError(f"{folder} is not a folder")
    if not (root / REQUIRED_FILE).is_file():
        raise AgentFolderError(
            f"{folder} has no {REQUIRED_FILE}; an agent folder needs one "
            "(it becomes the agent's system prompt)"
        )
    collector = _Collector(root, max_total_bytes)
    try:
        collector.walk(root)
    except OSError as exc:
        raise AgentFolderError(f"cannot read {exc.filename}: {exc.strerror}") from exc
    return sorted(collector.files, key=lambda item: item.path)


class _Collector:
    def __init__(self, root: Path, max_total_bytes: int) -> None:
        self.root = root
        self.max_total_bytes = max_total_bytes
        self.total = 0
        self.files: list[AgentFile] = []

    def walk(self, folder: Path) -> None:
        with os.scandir(folder) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if not is_skipped(entry.name):
                    self.visit(Path(entry.path))

    def visit(self, path: Path) -> None:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            self.visit_link(path)
        elif stat.S_ISDIR(info.st_mode):
            self.walk(path)
        elif stat.S_ISREG(info.st_mode):
            self.add(path, path, info.st_size)

    def visit_link(self, link: Path) -> None:
        relative = self.relative(link)
        try:
            target = link.resolve()
        except RuntimeError:  # Python < 3.13 reports symlink loops this way
            raise AgentFolderError(f"symlink {relative} is part of a symlink loop") from None
        if not target.is_relative_to(self.root):
            raise AgentFolderError(
                f"symlink {relative} points outside the agent folder (to {target}); "
                "replace it with a copy or remove it"
            )
        if not target.exists():
            raise AgentFolderError(f"symlink {relative} is broken (no {target})")
        if any(is_skipped(part) for part in target.relative_to(self.root).parts):
            return  # a link must not smuggle in what the skip list keeps out (.env)
        info = target.stat()
        if stat.S_ISREG(info.st_mode):
            self.add(link, target, info.st_size)

    def add(self, path: Path, source: Path, size: int) -> None:
        self.check_size(size)
        data = read_no_follow(source)
        self.check_size(len(data) - size)
        content = base64.b64encode(data).decode("ascii")
        self.files.append(AgentFile(self.relative(path), content, len(data)))

    def check_size(self, extra: int) -> None:
        self.total += extra
        if self.total > self.max_total_bytes:
            raise AgentFolderError(
                f"agent folder {self.root} holds more than {self.max_total_bytes / 2**20:g} MiB "
                "of files to upload; move data out of it or skip it "
                "(.git, node_modules, .venv, .cache are skipped already)"
            )

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()


def read_no_follow(path: Path) -> bytes:
    """Read ``path``, refusing to follow a symlink swapped in since it was checked."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as handle:
        return handle.read()
