"""Session workspaces: a private copy of the agent folder that the agent may change."""

from __future__ import annotations

import shutil
from pathlib import Path

SKIP_NAMES = frozenset({".git", "node_modules", "__pycache__", ".venv", "venv", ".cache", ".npm"})
SKIP_SUFFIXES = (".sock", ".lock", ".pid")


def _ignore(_dir: str, names: list[str]) -> set[str]:
    return {
        n for n in names
        if n in SKIP_NAMES or n.endswith(SKIP_SUFFIXES) or n == ".env" or n.startswith(".env.")
    }


def prepare(agent_dir: Path, workspace: Path) -> bool:
    """Copy the agent folder into ``workspace`` unless it already exists.

    Returns True if a fresh copy was made. Symlinks are copied as links, never followed, so
    a link in an agent folder cannot pull host files into the workspace.
    Raises OSError if the agent folder is unreadable.
    """
    if workspace.exists():
        return False
    tmp = workspace.with_name(workspace.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(agent_dir, tmp, symlinks=True, ignore=_ignore)
    tmp.replace(workspace)
    return True


def system_prompt(workspace: Path) -> str | None:
    """CLAUDE.md of the workspace (the agent's system prompt), if present and a real file."""
    path = workspace / "CLAUDE.md"
    if path.is_symlink() or not path.is_file():
        return None
    return path.read_text(errors="replace")
