"""Containment under an agent-controlled root: every escape is refused (400) and touches nothing."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from ashd.errors import BadRequest, NotFound, PayloadTooLarge
from ashd.files import bundle
from ashd.files.contained import Tree, UnsafePath, parse_relative
from ashd.files.rules import listing_skip


@pytest.fixture
def world(tmp_path: Path) -> tuple[Tree, Path]:
    """A workspace and, beside it, an 'outside' folder with a secret the agent links to."""
    ws, outside = tmp_path / "ws", tmp_path / "outside"
    ws.mkdir()
    outside.mkdir()
    (outside / "secret").write_text("host secret")
    (ws / "ok.txt").write_text("fine")
    (ws / "file-link").symlink_to(outside / "secret")
    (ws / "dir-link").symlink_to(outside)
    (ws / "etc").symlink_to("/etc")
    (ws / "sub").mkdir()
    (ws / "sub" / "up").symlink_to("../../outside")
    return Tree(ws), outside


@pytest.mark.parametrize("raw", ["", "/etc/passwd", "../x", "a/../../x", "a/..", "a\x00b", "a\\b", ".", "./",
                                 "x" * 300, 5, None])
def test_parse_relative_refuses_bad_paths(raw: object) -> None:
    with pytest.raises(UnsafePath) as err:
        parse_relative(raw)
    assert err.value.status == 400


def test_parse_relative_normalises_harmless_forms() -> None:
    assert parse_relative("./a//b/./c") == ("a", "b", "c")
    assert parse_relative(".", allow_root=True) == ()


@pytest.mark.parametrize("path", ["file-link", "dir-link/secret", "etc/passwd", "etc/hostname", "sub/up/secret"])
def test_reads_through_symlinks_are_refused(world: tuple[Tree, Path], path: str) -> None:
    tree, _ = world
    with pytest.raises(UnsafePath):
        tree.open_file(parse_relative(path))


@pytest.mark.parametrize("path", ["file-link", "dir-link/new", "dir-link/secret", "etc/ashd-test", "sub/up/new",
                                  "sub/up/deeper/new"])
def test_writes_through_symlinks_are_refused_and_touch_nothing(world: tuple[Tree, Path], path: str) -> None:
    tree, outside = world
    before = sorted(p.name for p in outside.rglob("*"))
    with pytest.raises(UnsafePath):
        tree.write(parse_relative(path), b"pwned")
    assert sorted(p.name for p in outside.rglob("*")) == before
    assert (outside / "secret").read_text() == "host secret"
    assert not Path("/etc/ashd-test").exists()
    assert os.readlink(tree.root / "file-link") == str(outside / "secret")  # the link itself is kept


@pytest.mark.parametrize("path", ["file-link", "dir-link/secret", "etc/hostname", "sub/up/secret"])
def test_deletes_through_symlinks_are_refused(world: tuple[Tree, Path], path: str) -> None:
    tree, outside = world
    with pytest.raises(UnsafePath):
        tree.delete(parse_relative(path))
    assert (outside / "secret").exists() and Path("/etc/hostname").exists()
    assert (tree.root / "file-link").is_symlink()


def test_a_directory_swapped_for_a_symlink_is_not_followed(world: tuple[Tree, Path]) -> None:
    tree, outside = world
    tree.write(("real", "a.txt"), b"1")
    (tree.root / "real" / "a.txt").unlink()
    (tree.root / "real").rmdir()
    (tree.root / "real").symlink_to(outside)  # the agent swaps it between two requests
    with pytest.raises(UnsafePath):
        tree.write(("real", "a.txt"), b"2")
    assert not (outside / "a.txt").exists()


def test_write_read_delete_and_listing(world: tuple[Tree, Path]) -> None:
    tree, _ = world
    assert tree.write(("new", "deep", "f.bin"), b"\x00\x01data") == 6
    f, st = tree.open_file(("new", "deep", "f.bin"))
    with f:
        assert f.read() == b"\x00\x01data" and st.st_size == 6
    (tree.root / "node_modules").mkdir()
    (tree.root / "node_modules" / "x.js").write_text("x")
    (tree.root / ".hidden").write_text("h")
    (tree.root / "app.pid").write_text("1")
    listed = {i.path for i in tree.list_files(listing_skip(True))}
    assert listed == {"ok.txt", "new/deep/f.bin", ".hidden"}  # no symlinks, no skipped names
    assert ".hidden" not in {i.path for i in tree.list_files(listing_skip(False))}
    tree.delete(("new", "deep", "f.bin"))
    with pytest.raises(NotFound):
        tree.open_file(("new", "deep", "f.bin"))
    with pytest.raises(BadRequest):
        tree.delete(("new",))  # a directory


def test_a_hardlink_is_replaced_not_written_through(world: tuple[Tree, Path], tmp_path: Path) -> None:
    tree, outside = world
    os.link(outside / "secret", tree.root / "hard")
    tree.write(("hard",), b"new")
    assert (outside / "secret").read_text() == "host secret"
    assert (tree.root / "hard").read_bytes() == b"new"


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_new_files_and_dirs_get_the_owner_of_the_root(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    os.chown(ws, 201234, 201234)
    Tree(ws).write(("d", "f.txt"), b"x")
    for p in (ws / "d", ws / "d" / "f.txt"):
        st = p.lstat()
        assert (st.st_uid, st.st_gid) == (201234, 201234), p


def test_fifo_is_not_read(world: tuple[Tree, Path]) -> None:
    tree, _ = world
    os.mkfifo(tree.root / "pipe")
    with pytest.raises(BadRequest):
        tree.open_file(("pipe",))  # returns at once (O_NONBLOCK), never hangs


# -- bundles ---------------------------------------------------------------------------


def make_tar(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, 0o644
    return info


def test_bundle_out_keeps_contained_links_and_never_dereferences(world: tuple[Tree, Path], tmp_path: Path) -> None:
    tree, _ = world
    (tree.root / ".env").write_text("SECRET=1")
    (tree.root / "inner-link").symlink_to("ok.txt")
    out = tmp_path / "b.tar.gz"
    bundle.write_bundle(tree, out, 1 << 20)
    with tarfile.open(out) as tar:
        names = {m.name: m for m in tar.getmembers()}
    assert "ok.txt" in names and "sub" in names
    assert names["inner-link"].issym() and names["inner-link"].linkname == "ok.txt"
    for leak in ("file-link", "dir-link", "etc", "sub/up", ".env"):
        assert leak not in names
    assert not any("secret" in n or n.startswith("etc/") for n in names)
    with pytest.raises(PayloadTooLarge):
        bundle.write_bundle(tree, out, 2)
    assert not out.exists()


@pytest.mark.parametrize("bad", [
    [(member("/abs"), b"x")],
    [(member("../up"), b"x")],
    [(member("a/../../up"), b"x")],
    [(member("l", tarfile.SYMTYPE, "/etc/passwd"), None)],
    [(member("l", tarfile.SYMTYPE, "../../outside"), None)],
    [(member("l", tarfile.SYMTYPE, "sub"), None), (member("l/x"), b"x")],
    [(member("h", tarfile.LNKTYPE, "ok.txt"), None)],
    [(member("dev", tarfile.CHRTYPE), None)],
    [(member("fifo", tarfile.FIFOTYPE), None)],
    [(member("ok-first"), b"x"), (member("dir-link/secret"), b"pwned")],  # workspace link: data filter
])
def test_bad_bundles_are_refused_before_anything_is_written(world: tuple[Tree, Path], tmp_path: Path,
                                                            bad: list[tuple[tarfile.TarInfo, bytes | None]]) -> None:
    tree, outside = world
    archive = tmp_path / "in.tar.gz"
    archive.write_bytes(make_tar(bad))
    before = sorted(p.name for p in tree.root.iterdir())
    with pytest.raises(BadRequest):
        bundle.extract_bundle(archive, tree, 1 << 20)
    assert sorted(p.name for p in tree.root.iterdir()) == before
    assert (outside / "secret").read_text() == "host secret"


def test_good_bundle_is_extracted(world: tuple[Tree, Path], tmp_path: Path) -> None:
    tree, _ = world
    archive = tmp_path / "in.tar.gz"
    archive.write_bytes(make_tar([(member("d", tarfile.DIRTYPE), None), (member("d/a.txt"), b"hello"),
                                  (member("d/l", tarfile.SYMTYPE, "a.txt"), None), (member("ok.txt"), b"over")]))
    assert bundle.extract_bundle(archive, tree, 1 << 20) == 4
    assert (tree.root / "d" / "a.txt").read_text() == "hello"
    assert os.readlink(tree.root / "d" / "l") == "a.txt"
    assert (tree.root / "ok.txt").read_text() == "over"
    with pytest.raises(PayloadTooLarge):
        bundle.extract_bundle(archive, tree, 3)
