"""Snapshotter over a local blob store: keys, tenants, restore, fork (ashd/snapshot/snapshots.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ashd.errors import SnapshotTooLarge
from ashd.snapshot.snapshots import Snapshotter, snapshot_key
from ashd.snapshot.store import LocalBlobStore
from tests.snapshot.trees import describe, make_workspace


@pytest.fixture
def snapshotter(tmp_path: Path) -> Snapshotter:
    return Snapshotter(LocalBlobStore(tmp_path / "blobs"), tmp_path / "tmp")


def workspace_with(path: Path, text: str) -> Path:
    path.mkdir(parents=True)
    (path / "owner.txt").write_text(text)
    return path


def test_save_and_restore_round_trip(snapshotter: Snapshotter, tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path / "ws")
    info = snapshotter.save("sess-1", "acme", workspace)
    assert info.key == "acme/sess-1/workspace.tar.gz"
    assert info.files == 6 and info.ms > 0
    assert info.bytes == (tmp_path / "blobs" / info.key).stat().st_size
    assert info.content_bytes > info.bytes  # compressed
    assert snapshotter.restore("sess-1", "acme", tmp_path / "restored") is True
    assert describe(tmp_path / "restored") == describe(workspace)
    assert list((tmp_path / "tmp").iterdir()) == []


def test_tenants_never_see_each_others_snapshots(snapshotter: Snapshotter, tmp_path: Path) -> None:
    snapshotter.save("same-id", "tenant-a", workspace_with(tmp_path / "a", "A"))
    assert snapshotter.restore("same-id", "tenant-b", tmp_path / "b-restore") is False
    assert not (tmp_path / "b-restore").exists()
    assert not snapshotter.exists("same-id", "tenant-b")
    assert snapshotter.exists("same-id", "tenant-a")
    snapshotter.save("same-id", "tenant-b", workspace_with(tmp_path / "b", "B"))
    snapshotter.restore("same-id", "tenant-a", tmp_path / "ra")
    snapshotter.restore("same-id", "tenant-b", tmp_path / "rb")
    assert (tmp_path / "ra" / "owner.txt").read_text() == "A"
    assert (tmp_path / "rb" / "owner.txt").read_text() == "B"


def test_the_default_tenant_is_written_and_read_at_the_same_key(snapshotter: Snapshotter, tmp_path: Path) -> None:
    info = snapshotter.save("s", "default", workspace_with(tmp_path / "w", "D"))
    assert info.key == snapshot_key("default", "s") == "default/s/workspace.tar.gz"
    assert snapshotter.restore("s", "default", tmp_path / "r")


def test_restore_of_a_session_without_snapshot(snapshotter: Snapshotter, tmp_path: Path) -> None:
    (tmp_path / "target").mkdir()
    assert snapshotter.restore("never-saved", "acme", tmp_path / "target") is False
    assert list((tmp_path / "target").iterdir()) == []


def test_save_replaces_and_a_failed_save_keeps_the_previous_snapshot(tmp_path: Path) -> None:
    snapshotter = Snapshotter(LocalBlobStore(tmp_path / "blobs"), tmp_path / "tmp", max_bytes=100_000)
    workspace = workspace_with(tmp_path / "ws", "v1")
    snapshotter.save("s", "t", workspace)
    (workspace / "owner.txt").write_text("v2")
    snapshotter.save("s", "t", workspace)
    (workspace / "huge.bin").write_bytes(b"x" * 200_000)
    with pytest.raises(SnapshotTooLarge):
        snapshotter.save("s", "t", workspace)
    snapshotter.restore("s", "t", tmp_path / "r")
    assert describe(tmp_path / "r") == {"owner.txt": ("file", b"v2", False)}
    assert list((tmp_path / "tmp").iterdir()) == []


def test_copy_forks_within_a_tenant_only(snapshotter: Snapshotter, tmp_path: Path) -> None:
    snapshotter.save("parent", "acme", workspace_with(tmp_path / "p", "parent files"))
    assert snapshotter.copy("parent", "child", "acme") is True
    snapshotter.restore("child", "acme", tmp_path / "child")
    assert (tmp_path / "child" / "owner.txt").read_text() == "parent files"
    assert snapshotter.copy("parent", "child", "other-tenant") is False
    assert not snapshotter.exists("child", "other-tenant")
    assert snapshotter.copy("missing", "child2", "acme") is False
    assert not snapshotter.exists("child2", "acme")


def test_delete(snapshotter: Snapshotter, tmp_path: Path) -> None:
    snapshotter.save("s", "t", workspace_with(tmp_path / "w", "x"))
    snapshotter.delete("s", "t")
    assert not snapshotter.exists("s", "t")
    snapshotter.delete("s", "t")


@pytest.mark.parametrize(
    ("tenant", "session"),
    [("..", "s"), ("t", ".."), ("a/b", "s"), ("t", "s/../../x"), ("", "s"), ("t", ""), ("t", "s p"), ("té", "s")],
)
def test_ids_that_are_not_one_safe_segment_are_refused(snapshotter: Snapshotter, tmp_path: Path,
                                                        tenant: str, session: str) -> None:
    workspace = workspace_with(tmp_path / "w", "x")
    with pytest.raises(ValueError, match="cannot name a snapshot"):
        snapshotter.save(session, tenant, workspace)
    with pytest.raises(ValueError):
        snapshotter.restore(session, tenant, tmp_path / "r")
    assert not (tmp_path / "blobs").exists()
