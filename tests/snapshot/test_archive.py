"""Making archives of a workspace and restoring them (ashd/snapshot/archive.py)."""

from __future__ import annotations

import os
import socket
import tarfile
from pathlib import Path

import pytest

from ashd.errors import SnapshotError, SnapshotTooLarge
from ashd.snapshot.archive import SKIP_NAMES, create_archive, extract_archive
from tests.snapshot.trees import SECRET, describe, make_workspace, raw_tar_bytes, tar_members


def round_trip(workspace: Path, tmp_path: Path) -> Path:
    archive = tmp_path / "ws.tar.gz"
    create_archive(workspace, archive)
    restored = tmp_path / "restored"
    extract_archive(archive, restored)
    return restored


def test_round_trip_keeps_dirs_files_binaries_unicode_modes_and_inside_links(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path / "ws")
    restored = round_trip(workspace, tmp_path)
    assert describe(restored) == describe(workspace)
    assert (restored / "src" / "link-to-dir" / "data.bin").read_bytes() == (
        workspace / "src/pkg/deep/data.bin"
    ).read_bytes()
    assert (restored / "run.sh").stat().st_mode & 0o100
    assert not list(tmp_path.glob(".restored.restore-*"))


def test_stats_count_what_was_stored(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path / "ws")
    os.symlink("/etc/passwd", workspace / "outside")
    stats = create_archive(workspace, tmp_path / "a.tar.gz")
    files = [p for p in workspace.rglob("*") if p.is_file() and not p.is_symlink()]
    assert stats.files == len(files) == 6
    assert stats.bytes == sum(p.stat().st_size for p in files)
    assert (stats.symlinks, stats.dropped_links) == (4, 1)
    restored_stats = extract_archive(tmp_path / "a.tar.gz", tmp_path / "r")
    assert (restored_stats.files, restored_stats.bytes, restored_stats.symlinks) == (6, stats.bytes, 4)


def test_links_outside_are_dropped_and_never_followed(tmp_path: Path) -> None:
    other = tmp_path / "other-tree"
    (other / "dir").mkdir(parents=True)
    (other / "secret.txt").write_bytes(SECRET)
    (other / "dir" / "more.txt").write_bytes(SECRET)
    workspace = tmp_path / "ws"
    (workspace / "data").mkdir(parents=True)
    (workspace / "data" / "a.txt").write_text("a")
    links = {
        "shadow": "/etc/shadow",
        "abs-other": str(other / "secret.txt"),
        "rel-other": "../other-tree/secret.txt",
        "dir-other": str(other / "dir"),  # a directory link: must not be walked
        "hop": "data/../../other-tree",  # lexically inside first, then out
        "chain": "hop-etc",
        "hop-etc": "/etc",
        "data/deeper-escape": "../../other-tree/dir/more.txt",
    }
    for name, target in links.items():
        os.symlink(target, workspace / name)
    archive = tmp_path / "ws.tar.gz"
    stats = create_archive(workspace, archive)
    assert stats.dropped_links == len(links)
    assert set(tar_members(archive)) == {"data", "data/a.txt"}
    assert SECRET not in raw_tar_bytes(archive)
    assert b"root:" not in raw_tar_bytes(archive)


def test_links_that_resolve_inside_are_kept_relative(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    (workspace / "data").mkdir(parents=True)
    (workspace / "data" / "a.txt").write_text("A")
    os.symlink(workspace / "data" / "a.txt", workspace / "absolute-inside")
    os.symlink("../ws/data/a.txt", workspace / "out-and-back")
    os.symlink(".", workspace / "self")
    create_archive(workspace, tmp_path / "x.tar.gz")
    members = tar_members(tmp_path / "x.tar.gz")
    assert members["absolute-inside"].linkname == "data/a.txt"
    assert members["out-and-back"].linkname == "data/a.txt"
    assert members["self"].linkname == "."
    restored = tmp_path / "elsewhere" / "restored"
    extract_archive(tmp_path / "x.tar.gz", restored)
    assert (restored / "absolute-inside").read_text() == "A"
    assert (restored / "out-and-back").read_text() == "A"


def test_a_symlinked_directory_is_not_walked_even_if_inside(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    (workspace / "real").mkdir(parents=True)
    (workspace / "real" / "f.txt").write_text("once")
    os.symlink("real", workspace / "alias")
    archive = tmp_path / "a.tar.gz"
    create_archive(workspace, archive)
    members = tar_members(archive)
    assert set(members) == {"alias", "real", "real/f.txt"}
    assert members["alias"].issym()


@pytest.mark.parametrize("name", sorted(SKIP_NAMES))
def test_skip_list_directories_are_left_out_at_any_depth(tmp_path: Path, name: str) -> None:
    workspace = tmp_path / "ws"
    for parent in (workspace, workspace / "a" / "b"):
        (parent / name).mkdir(parents=True)
        (parent / name / "inside.txt").write_bytes(SECRET)
    (workspace / "keep.txt").write_text("k")
    archive = tmp_path / "a.tar.gz"
    create_archive(workspace, archive)
    assert set(tar_members(archive)) == {"a", "a/b", "keep.txt"}
    assert SECRET not in raw_tar_bytes(archive)


def test_skip_suffixes_and_near_misses(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    for name in ("yarn.lock", "app.pid", "x.sock", "tmp", "keep.lock.txt", "tmpfile", "venv2", "node_modules.md"):
        (workspace / name).write_text(name)
    archive = tmp_path / "a.tar.gz"
    create_archive(workspace, archive)
    assert set(tar_members(archive)) == {"keep.lock.txt", "tmpfile", "venv2", "node_modules.md"}


def test_fifos_sockets_and_setuid_bits_never_reach_the_archive(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    os.mkfifo(workspace / "pipe")  # opening it would block: it must not be opened
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(workspace / "live-socket"))
    tool = workspace / "tool"
    tool.write_text("x")
    tool.chmod(0o6755)
    try:
        archive = tmp_path / "a.tar.gz"
        create_archive(workspace, archive)
    finally:
        sock.close()
    members = tar_members(archive)
    assert set(members) == {"tool"}
    assert members["tool"].mode == 0o755
    assert (members["tool"].uid, members["tool"].uname) == (0, "")


def test_size_limit_is_a_clear_error_and_leaves_no_archive(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "a.bin").write_bytes(b"a" * 600_000)
    (workspace / "b.bin").write_bytes(b"b" * 600_000)
    archive = tmp_path / "a.tar.gz"
    with pytest.raises(SnapshotTooLarge, match=r"more than the snapshot limit of 1\.0 MiB.*'b\.bin'"):
        create_archive(workspace, archive, max_bytes=1 << 20)
    assert not archive.exists()
    assert create_archive(workspace, archive, max_bytes=1_200_000).bytes == 1_200_000


def test_workspace_must_be_a_directory(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match="not a directory"):
        create_archive(tmp_path / "missing", tmp_path / "a.tar.gz")


def test_restore_replaces_an_empty_target_and_keeps_its_mode(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path / "ws")
    archive = tmp_path / "a.tar.gz"
    create_archive(workspace, archive)
    target = tmp_path / "target"
    target.mkdir(mode=0o750)
    target.chmod(0o750)
    extract_archive(archive, target)
    assert describe(target) == describe(workspace)
    assert target.stat().st_mode & 0o777 == 0o750


def test_restore_refuses_a_non_empty_target_and_leaves_it_alone(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar.gz"
    create_archive(make_workspace(tmp_path / "ws"), archive)
    target = tmp_path / "target"
    target.mkdir()
    (target / "mine.txt").write_text("keep me")
    with pytest.raises(SnapshotError, match="not an empty directory"):
        extract_archive(archive, target)
    assert describe(target) == {"mine.txt": ("file", b"keep me", False)}


def test_restore_of_a_corrupt_archive_is_a_snapshot_error(tmp_path: Path) -> None:
    archive = tmp_path / "bad.tar.gz"
    archive.write_bytes(os.urandom(4096))
    with pytest.raises(SnapshotError, match="corrupt"):
        extract_archive(archive, tmp_path / "target")
    assert not (tmp_path / "target").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.tar.gz"]


def test_restore_accepts_dot_slash_names_from_plain_tar(tmp_path: Path) -> None:
    archive = tmp_path / "plain.tar.gz"
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f.txt").write_text("F")
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname=".")
    extract_archive(archive, tmp_path / "target")
    assert (tmp_path / "target" / "d" / "f.txt").read_text() == "F"


def test_names_that_are_not_utf8_round_trip_byte_for_byte(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    fd = os.open(os.path.join(os.fsencode(workspace), b"caf\xe9-latin1.txt"), os.O_CREAT | os.O_WRONLY)
    os.write(fd, b"bytes")
    os.close(fd)
    restored = round_trip(workspace, tmp_path)
    assert os.listdir(os.fsencode(restored)) == [b"caf\xe9-latin1.txt"]
