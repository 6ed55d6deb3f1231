"""Reading a deployed agent folder: no symlink is followed, on its path or inside it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ashd.errors import NotFound
from ashd.files.agent_folder import agent_tree, copy_out, instructions
from ashd.files.contained import UnsafePath, open_dir_nofollow


def _folder(path: Path, text: str) -> Path:
    path.mkdir(parents=True)
    (path / "CLAUDE.md").write_text(text)
    return path


def test_a_symlink_anywhere_on_the_folders_path_is_refused(tmp_path: Path) -> None:
    real = _folder(tmp_path / "real" / "agent", "deployed")
    os.close(open_dir_nofollow(real))
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(UnsafePath, match="symlink"):
        open_dir_nofollow(tmp_path / "link" / "agent")
    with pytest.raises(NotFound):
        open_dir_nofollow(tmp_path / "missing")
    assert instructions(real) == "deployed"
    assert instructions(tmp_path / "link" / "agent") is None


def test_the_copy_keeps_links_as_links_and_reads_nothing_through_them(tmp_path: Path) -> None:
    src = _folder(tmp_path / "agent", "x")
    (src / "sub").mkdir()
    (src / "sub" / "a.txt").write_text("a")
    (src / "pw").symlink_to("/etc/passwd")
    (src / "etc").symlink_to("/etc")
    (src / ".env").write_text("SECRET=1")
    os.mkfifo(src / "fifo")
    dest = tmp_path / "copy"
    copy_out(agent_tree(src), dest, lambda name: name == ".env")
    assert sorted(p.name for p in dest.iterdir()) == ["CLAUDE.md", "etc", "pw", "sub"]
    assert (dest / "pw").is_symlink() and os.readlink(dest / "pw") == "/etc/passwd"
    assert (dest / "etc").is_symlink() and (dest / "sub" / "a.txt").read_text() == "a"


def test_instructions_are_a_regular_claude_md_only(tmp_path: Path) -> None:
    folder = tmp_path / "agent"
    folder.mkdir()
    (folder / "CLAUDE.md").symlink_to("/etc/passwd")
    assert instructions(folder) is None
