"""Session workspaces: a private copy of the agent folder that the agent may change."""

from __future__ import annotations

import shutil
from pathlib import Path

from ashd.files.agent_folder import agent_tree, copy_out

SKIP_NAMES = frozenset({".git", "node_modules", "__pycache__", ".venv", "venv", ".cache", ".npm"})
SKIP_SUFFIXES = (".sock", ".lock", ".pid")


def _skipped(name: str) -> bool:
    return name in SKIP_NAMES or name.endswith(SKIP_SUFFIXES) or name == ".env" or name.startswith(".env.")


def prepare(agent_dir: Path, workspace: Path) -> bool:
    """Copy the agent folder into ``workspace`` unless it already exists.

    Returns True if a fresh copy was made. The folder is read without following any symlink
    (``ashd/files/agent_folder.py``): links are copied as links, so a link in an agent folder
    cannot pull host files into the workspace. Raises OSError if the agent folder is
    unreadable, AshError if its path goes through a symlink.
    """
    if workspace.exists():
        return False
    tmp = workspace.with_name(workspace.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    copy_out(agent_tree(agent_dir), tmp, _skipped)
    tmp.replace(workspace)
    return True

