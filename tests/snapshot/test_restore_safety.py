"""Restoring hostile archives: each is rejected and nothing is written anywhere."""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from ashd.errors import SnapshotError, SnapshotTooLarge, UnsafeArchive
from ashd.snapshot.archive import extract_archive
from tests.snapshot.trees import craft, member

EVIL = b"EVIL-PAYLOAD"
Members = list[tuple[tarfile.TarInfo, bytes | None]]


def _dir(name: str) -> tuple[tarfile.TarInfo, None]:
    return member(name, tarfile.DIRTYPE, mode=0o755), None


def _file(name: str, mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    return member(name, mode=mode), EVIL


def _sym(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    return member(name, tarfile.SYMTYPE, linkname=target, mode=0o777), None


def _hard(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    return member(name, tarfile.LNKTYPE, linkname=target), None


# Each case gets `outside` (an existing directory beside the target, holding secret.txt).
CASES: dict[str, tuple[Callable[[Path], Members], str]] = {
    "dot-dot name": (lambda o: [_file("../outside/evil.txt")], "not a plain relative path"),
    "dot-dot inside a name": (lambda o: [_dir("a"), _file("a/../../outside/evil.txt")], "not a plain relative path"),
    "absolute name": (lambda o: [_file(f"{o}/evil.txt")], "absolute name"),
    "absolute symlink, then a file through it": (
        lambda o: [_sym("link", str(o)), _file("link/evil.txt")],
        "points outside",
    ),
    "relative symlink out, then a file through it": (
        lambda o: [_sym("link", "../outside"), _file("link/evil.txt")],
        "points outside",
    ),
    "symlink inside, then a file through it": (
        lambda o: [_dir("d"), _sym("link", "d"), _file("link/evil.txt")],
        "lies behind a symlink",
    ),
    "symlink to the parent": (lambda o: [_sym("up", "..")], "points outside"),
    "deep symlink climbing out": (lambda o: [_dir("a"), _dir("a/b"), _sym("a/b/x", "../../../outside")], "outside"),
    "hardlink outside": (lambda o: [_hard("h", "../outside/secret.txt"), _file("h")], "not a file, directory"),
    "absolute hardlink": (lambda o: [_hard("h", str(o / "secret.txt"))], "not a file, directory"),
    "hardlink inside": (lambda o: [_file("a"), _hard("b", "a")], "not a file, directory"),
    "character device": (lambda o: [(member("null", tarfile.CHRTYPE), None)], "not a file, directory"),
    "block device": (lambda o: [(member("sda", tarfile.BLKTYPE), None)], "not a file, directory"),
    "fifo": (lambda o: [(member("pipe", tarfile.FIFOTYPE), None)], "not a file, directory"),
    "setuid file": (lambda o: [_file("suid", mode=0o4755)], "setuid"),
    "setgid file": (lambda o: [_file("sgid", mode=0o2755)], "setuid or setgid"),
    "duplicate name": (lambda o: [_file("a.txt"), _file("a.txt")], "appears twice"),
    "directory replaced by a symlink": (lambda o: [_dir("d"), _sym("d", "../outside")], "appears twice"),
    "good members before a bad one": (
        lambda o: [_dir("ok"), _file("ok/fine.txt"), _file("../outside/evil.txt")],
        "not a plain relative path",
    ),
}


@pytest.fixture
def arena(tmp_path: Path) -> Path:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("ORIGINAL")
    return tmp_path


def everything(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_archive_is_rejected_and_nothing_is_written(arena: Path, case: str) -> None:
    build, message = CASES[case]
    archive = craft(arena / "evil.tar.gz", build(arena / "outside"))
    before = everything(arena)
    with pytest.raises(UnsafeArchive, match=message):
        extract_archive(archive, arena / "target")
    assert everything(arena) == before  # no target, no temp sibling, nothing outside
    assert (arena / "outside" / "secret.txt").read_text() == "ORIGINAL"


def test_hostile_archive_leaves_an_existing_empty_target_empty(arena: Path) -> None:
    archive = craft(arena / "evil.tar.gz", [_file("fine.txt"), _file("../outside/evil.txt")])
    (arena / "target").mkdir()
    with pytest.raises(UnsafeArchive):
        extract_archive(archive, arena / "target")
    assert list((arena / "target").iterdir()) == []
    assert sorted(p.name for p in arena.iterdir()) == ["evil.tar.gz", "outside", "target"]


def test_decompression_bomb_is_stopped_by_the_size_limit(arena: Path) -> None:
    big = member("big.bin")
    archive = craft(arena / "bomb.tar.gz", [(big, b"\0" * (2 << 20))])
    assert archive.stat().st_size < 20_000  # compresses ~1000:1
    with pytest.raises(SnapshotTooLarge, match=r"snapshot limit of 1\.0 MiB"):
        extract_archive(archive, arena / "target", max_bytes=1 << 20)
    assert not (arena / "target").exists()
    assert extract_archive(archive, arena / "target", max_bytes=4 << 20).bytes == 2 << 20


def test_unsafe_archive_is_a_snapshot_error(arena: Path) -> None:
    assert issubclass(UnsafeArchive, SnapshotError)
    assert issubclass(SnapshotTooLarge, SnapshotError)


def test_tarfile_data_filter_is_a_second_line_of_defence(arena: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ashd.snapshot import archive as archive_module

    monkeypatch.setattr(archive_module._MemberGuard, "_check_link", staticmethod(lambda member, name: None))
    archive = craft(arena / "evil.tar.gz", [_sym("link", str(arena / "outside"))])
    with pytest.raises(UnsafeArchive, match="data filter"):
        extract_archive(archive, arena / "target")
    assert sorted(p.name for p in arena.iterdir()) == ["evil.tar.gz", "outside"]
