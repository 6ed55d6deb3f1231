"""Collecting an agent folder for upload: skips, symlinks, CLAUDE.md, size cap."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from ashd.client.agent_files import AgentFolderError, collect_agent_files


def write(root: Path, relative: str, content: bytes = b"x") -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


@pytest.fixture
def agent(tmp_path: Path) -> Path:
    root = tmp_path / "my-agent"
    write(root, "CLAUDE.md", b"# You are helpful\n")
    return root


def paths(root: Path) -> list[str]:
    return [item.path for item in collect_agent_files(root)]


def test_files_are_relative_posix_sorted_and_base64(agent: Path) -> None:
    write(agent, "src/tools/run.py", b"print('\xe2\x9c\x93')")
    write(agent, ".claude/settings.json", b"{}")
    files = collect_agent_files(agent)
    assert [f.path for f in files] == [".claude/settings.json", "CLAUDE.md", "src/tools/run.py"]
    run = files[2]
    assert base64.b64decode(run.content) == b"print('\xe2\x9c\x93')"
    assert run.to_json() == {"path": "src/tools/run.py", "content": run.content}
    assert run.size == len(b"print('\xe2\x9c\x93')")


def test_skip_list_applies_at_any_depth(agent: Path) -> None:
    skipped = [
        ".git/config", "node_modules/x/index.js", "sub/node_modules/y.js",
        "__pycache__/a.pyc", "sub/__pycache__/b.pyc", ".venv/bin/python", "venv/lib/x",
        ".cache/blob", ".env", ".env.local", "sub/.env.production", "run.sock",
        "poetry.lock", "daemon.pid",
    ]
    kept = ["environment.md", ".envrc", "lockfile.txt", "src/venv.py", "package-lock.json"]
    for name in skipped + kept:
        write(agent, name)
    assert paths(agent) == sorted(["CLAUDE.md", *kept])


def test_special_files_are_skipped_without_blocking(agent: Path) -> None:
    os.mkfifo(agent / "pipe")  # opening a FIFO for reading would block forever
    assert paths(agent) == ["CLAUDE.md"]


def test_missing_claude_md_is_a_clear_error(tmp_path: Path) -> None:
    write(tmp_path, "README.md")
    with pytest.raises(AgentFolderError, match=r"has no CLAUDE\.md"):
        collect_agent_files(tmp_path)


def test_a_file_instead_of_a_folder_is_refused(agent: Path) -> None:
    with pytest.raises(AgentFolderError, match="is not a folder"):
        collect_agent_files(agent / "CLAUDE.md")


def test_symlink_to_a_file_outside_is_refused(agent: Path, tmp_path: Path) -> None:
    secret = write(tmp_path, "secret.txt", b"password")
    (agent / "notes.txt").symlink_to(secret)
    with pytest.raises(AgentFolderError, match=r"symlink notes\.txt points outside"):
        collect_agent_files(agent)


def test_symlink_to_a_folder_outside_is_refused_not_followed(agent: Path, tmp_path: Path) -> None:
    write(tmp_path, "home/.ssh/id_rsa", b"key")
    (agent / "data").symlink_to(tmp_path / "home")
    with pytest.raises(AgentFolderError, match="points outside"):
        collect_agent_files(agent)


def test_relative_symlink_escaping_with_dotdot_is_refused(agent: Path, tmp_path: Path) -> None:
    write(tmp_path, "outside.txt")
    (agent / "sub").mkdir()
    (agent / "sub" / "link").symlink_to("../../outside.txt")
    with pytest.raises(AgentFolderError, match="sub/link points outside"):
        collect_agent_files(agent)


def test_symlink_to_a_file_inside_is_uploaded_with_its_content(agent: Path) -> None:
    write(agent, "docs/guide.md", b"guide")
    (agent / "GUIDE.md").symlink_to("docs/guide.md")
    files = {f.path: base64.b64decode(f.content) for f in collect_agent_files(agent)}
    assert files["GUIDE.md"] == b"guide"


def test_symlink_to_a_folder_inside_is_not_followed(agent: Path) -> None:
    write(agent, "docs/guide.md")
    (agent / "alias").symlink_to("docs")
    (agent / "docs" / "loop").symlink_to("..")  # would recurse forever if followed
    assert paths(agent) == ["CLAUDE.md", "docs/guide.md"]


def test_symlink_cannot_smuggle_in_a_skipped_file(agent: Path) -> None:
    write(agent, ".env", b"API_KEY=secret")
    (agent / "config.txt").symlink_to(".env")
    assert paths(agent) == ["CLAUDE.md"]


def test_broken_symlink_is_a_clear_error(agent: Path) -> None:
    (agent / "gone").symlink_to("nowhere")
    with pytest.raises(AgentFolderError, match="symlink gone is broken"):
        collect_agent_files(agent)


def test_folder_given_through_a_symlink_is_fine(agent: Path, tmp_path: Path) -> None:
    (tmp_path / "link-to-agent").symlink_to(agent)
    assert paths(tmp_path / "link-to-agent") == ["CLAUDE.md"]


def test_total_size_cap(agent: Path) -> None:
    size = (agent / "CLAUDE.md").stat().st_size
    write(agent, "data.bin", b"x" * 100)
    assert len(collect_agent_files(agent, max_total_bytes=size + 100)) == 2
    with pytest.raises(AgentFolderError, match="MiB of files to upload"):
        collect_agent_files(agent, max_total_bytes=size + 99)


def test_unreadable_file_is_a_clear_error(agent: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    private = write(agent, "private.txt")
    real_open = os.open

    def deny(path: str | os.PathLike[str], flags: int, *args: int) -> int:
        if Path(path) == private:  # chmod 0 is no obstacle when tests run as root
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(AgentFolderError, match=r"cannot read .*private\.txt: Permission denied"):
        collect_agent_files(agent)
