"""workspace_digest: equal when nothing changed, different on any change, None when racy."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ashd.snapshot.fingerprint import RACY_NS, workspace_digest


def later() -> int:
    """A "now" far enough ahead that no entry written so far is racy."""
    return time.time_ns() + 10 * RACY_NS


def make(root: Path) -> None:
    (root / "src").mkdir(parents=True)
    (root / "src" / "a.py").write_text("print(1)\n")
    (root / "notes.md").write_text("# notes\n")
    (root / "link").symlink_to("notes.md")


def test_unchanged_tree_has_a_stable_digest(tmp_path: Path) -> None:
    make(tmp_path)
    first = workspace_digest(tmp_path, later())
    assert first is not None and first == workspace_digest(tmp_path, later())


def test_every_kind_of_change_changes_it(tmp_path: Path) -> None:
    make(tmp_path)
    seen = {workspace_digest(tmp_path, later())}
    changes = [
        lambda: (tmp_path / "src" / "a.py").write_text("print(2)\n"),  # same size, new mtime
        lambda: (tmp_path / "new.txt").write_text(""),
        lambda: (tmp_path / "link").unlink() or (tmp_path / "link").symlink_to("src"),
        lambda: os.chmod(tmp_path / "notes.md", 0o600),
        lambda: (tmp_path / "src" / "a.py").rename(tmp_path / "src" / "b.py"),
        lambda: (tmp_path / "notes.md").unlink(),
    ]
    for change in changes:
        change()
        digest = workspace_digest(tmp_path, later())
        assert digest not in seen
        seen.add(digest)


def test_entries_the_archive_skips_do_not_count(tmp_path: Path) -> None:
    make(tmp_path)
    before = workspace_digest(tmp_path, later())
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "node_modules" / "x.js").write_text("x")
    (tmp_path / "bridge.sock").write_text("")
    assert workspace_digest(tmp_path, later()) == before


def test_a_just_changed_entry_gives_no_digest(tmp_path: Path) -> None:
    make(tmp_path)
    assert workspace_digest(tmp_path) is None  # everything was written just now
    assert workspace_digest(tmp_path / "missing", later()) is None
