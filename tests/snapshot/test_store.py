"""LocalBlobStore, key validation and blob_store_from_url (ashd/snapshot/store.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ashd.errors import ConfigError
from ashd.snapshot.store import LocalBlobStore, S3BlobStore, blob_store_from_url, parse_s3_url, validate_key

BAD_KEYS = [
    "",
    "/abs/key",
    "..",
    "a/../b",
    "../escape",
    "a/./b",
    ".",
    "a//b",
    "trailing/",
    "with space",
    "back\\slash",
    "ünïcode",
    "new\nline",
    "semi;colon",
    "x" * 1025,
]
LONG_KEY = "/".join(["x" * 200] * 5) + "/abc"  # 1008 characters; each segment fits NAME_MAX
GOOD_KEYS = ["a", "tenant/session/workspace.tar.gz", "t-1/S_2/x.y", "a..b", ".hidden/file", LONG_KEY]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_are_refused_everywhere(tmp_path: Path, key: str) -> None:
    store = LocalBlobStore(tmp_path / "root")
    src = tmp_path / "src"
    src.write_bytes(b"data")
    with pytest.raises(ValueError, match="invalid blob key"):
        validate_key(key)
    for call in (lambda: store.put(key, src), lambda: store.get(key, tmp_path / "d"), lambda: store.exists(key)):
        with pytest.raises(ValueError):
            call()
    with pytest.raises(ValueError):
        store.delete(key)
    assert not (tmp_path / "root").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


@pytest.mark.parametrize("key", GOOD_KEYS)
def test_good_keys_round_trip(tmp_path: Path, key: str) -> None:
    store = LocalBlobStore(tmp_path / "root")
    src = tmp_path / "src"
    src.write_bytes(b"payload")
    store.put(key, src)
    assert store.exists(key)
    assert store.get(key, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == b"payload"
    assert store.path_for(key) == tmp_path / "root" / key


def test_put_replaces_atomically_and_leaves_no_temp_files(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "root")
    for content in (b"one", b"two" * 100_000):
        (tmp_path / "src").write_bytes(content)
        store.put("t/s/workspace.tar.gz", tmp_path / "src")
    assert os.listdir(tmp_path / "root" / "t" / "s") == ["workspace.tar.gz"]
    assert store.get("t/s/workspace.tar.gz", tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == b"two" * 100_000
    assert (tmp_path / "src").exists()  # put copies; the source stays


def test_missing_keys(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "root")
    dest = tmp_path / "dest"
    assert store.get("t/none/workspace.tar.gz", dest) is False
    assert not dest.exists()
    assert store.exists("t/none/workspace.tar.gz") is False
    store.delete("t/none/workspace.tar.gz")  # no error


def test_delete_removes_the_blob_and_its_empty_directories(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "root")
    (tmp_path / "src").write_bytes(b"x")
    store.put("t/a/workspace.tar.gz", tmp_path / "src")
    store.put("t/b/workspace.tar.gz", tmp_path / "src")
    store.delete("t/a/workspace.tar.gz")
    assert not store.exists("t/a/workspace.tar.gz")
    assert sorted(os.listdir(tmp_path / "root" / "t")) == ["b"]
    store.delete("t/b/workspace.tar.gz")
    assert os.listdir(tmp_path / "root") == []


def test_a_symlinked_directory_under_the_root_cannot_be_used_to_escape(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    os.symlink(outside, root / "evil")
    (tmp_path / "src").write_bytes(b"x")
    with pytest.raises(ValueError, match="outside"):
        LocalBlobStore(root).put("evil/file", tmp_path / "src")
    assert list(outside.iterdir()) == []


def test_blob_store_from_url(tmp_path: Path) -> None:
    default = blob_store_from_url(None, tmp_path / "data")
    assert isinstance(default, LocalBlobStore) and default.root == tmp_path / "data" / "snapshots"
    assert isinstance(blob_store_from_url("", tmp_path), LocalBlobStore)
    local = blob_store_from_url(f"file://{tmp_path}/my%20snaps", tmp_path / "data")
    assert isinstance(local, LocalBlobStore) and local.root == tmp_path / "my snaps"
    s3 = blob_store_from_url("s3://bucket/some/prefix/", tmp_path, endpoint_url="http://127.0.0.1:9")
    assert isinstance(s3, S3BlobStore)
    assert (s3.bucket, s3.prefix) == ("bucket", "some/prefix/")
    assert s3.object_key("t/s/workspace.tar.gz") == "some/prefix/t/s/workspace.tar.gz"


@pytest.mark.parametrize(
    "url",
    ["gs://bucket/prefix/", "http://example.com/x", "file://host/dir", "file:relative", "s3://", "s3://b/a/../x"],
)
def test_unsupported_snapshot_urls_name_the_setting(tmp_path: Path, url: str) -> None:
    with pytest.raises((ConfigError, ValueError), match=r"ASH_SNAPSHOT_URL|invalid blob key"):
        blob_store_from_url(url, tmp_path)


def test_parse_s3_url() -> None:
    assert parse_s3_url("s3://b") == ("b", "")
    assert parse_s3_url("s3://b/") == ("b", "")
    assert parse_s3_url("s3://b/p") == ("b", "p/")
    assert parse_s3_url("s3://b/p/q/") == ("b", "p/q/")
