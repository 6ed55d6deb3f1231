"""Snapshots in S3, against a real S3-compatible server (moto_server) on loopback."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from ashd.errors import BlobStoreError
from ashd.snapshot.snapshots import Snapshotter
from ashd.snapshot.store import S3BlobStore, blob_store_from_url
from tests.snapshot.trees import describe, make_workspace


def keys(client: Any, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", []))


def test_round_trip_tenants_and_fork_in_s3(s3_endpoint: str, s3_client: Any, s3_bucket: str, tmp_path: Path) -> None:
    store = S3BlobStore(f"s3://{s3_bucket}/ashd/snapshots/", endpoint_url=s3_endpoint)
    snapshotter = Snapshotter(store, tmp_path / "tmp")
    workspace = make_workspace(tmp_path / "ws")

    info = snapshotter.save("sess-1", "acme", workspace)
    assert keys(s3_client, s3_bucket) == ["ashd/snapshots/acme/sess-1/workspace.tar.gz"]
    head = s3_client.head_object(Bucket=s3_bucket, Key="ashd/snapshots/acme/sess-1/workspace.tar.gz")
    assert head["ContentLength"] == info.bytes

    assert snapshotter.restore("sess-1", "acme", tmp_path / "restored")
    assert describe(tmp_path / "restored") == describe(workspace)

    # Another tenant with the same session id sees nothing, then only its own files.
    assert snapshotter.restore("sess-1", "globex", tmp_path / "other") is False
    assert not (tmp_path / "other").exists()
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "owner.txt").write_text("globex")
    snapshotter.save("sess-1", "globex", tmp_path / "g")
    assert snapshotter.restore("sess-1", "globex", tmp_path / "other")
    assert describe(tmp_path / "other") == {"owner.txt": ("file", b"globex", False)}

    assert snapshotter.copy("sess-1", "fork-1", "acme")
    assert snapshotter.restore("fork-1", "acme", tmp_path / "fork")
    assert describe(tmp_path / "fork") == describe(workspace)
    assert keys(s3_client, s3_bucket) == [
        "ashd/snapshots/acme/fork-1/workspace.tar.gz",
        "ashd/snapshots/acme/sess-1/workspace.tar.gz",
        "ashd/snapshots/globex/sess-1/workspace.tar.gz",
    ]
    assert list((tmp_path / "tmp").iterdir()) == []


def test_missing_keys_in_s3(s3_endpoint: str, s3_bucket: str, tmp_path: Path) -> None:
    store = S3BlobStore(f"s3://{s3_bucket}", endpoint_url=s3_endpoint)
    dest = tmp_path / "dest"
    assert store.get("t/none/workspace.tar.gz", dest) is False
    assert not dest.exists()
    assert store.exists("t/none/workspace.tar.gz") is False
    store.delete("t/none/workspace.tar.gz")
    assert Snapshotter(store, tmp_path / "tmp").copy("none", "x", "t") is False
    (tmp_path / "src").write_bytes(b"blob")
    store.put("t/s/workspace.tar.gz", tmp_path / "src")
    assert store.exists("t/s/workspace.tar.gz")
    store.delete("t/s/workspace.tar.gz")
    assert not store.exists("t/s/workspace.tar.gz")


def test_snapshot_url_and_endpoint_from_the_environment(
    s3_endpoint: str, s3_client: Any, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASH_S3_ENDPOINT", s3_endpoint)
    monkeypatch.setenv("ASH_S3_REGION", "eu-west-1")
    store = blob_store_from_url(f"s3://{s3_bucket}/p/", tmp_path)
    assert isinstance(store, S3BlobStore) and store.endpoint_url == s3_endpoint
    (tmp_path / "src").write_bytes(b"via env")
    store.put("t/s/workspace.tar.gz", tmp_path / "src")
    assert keys(s3_client, s3_bucket) == ["p/t/s/workspace.tar.gz"]


def test_a_missing_bucket_is_a_blob_store_error(s3_endpoint: str, tmp_path: Path) -> None:
    store = S3BlobStore("s3://no-such-bucket-ashd/", endpoint_url=s3_endpoint)
    (tmp_path / "src").write_bytes(b"x")
    with pytest.raises(BlobStoreError, match=re.escape("could not store blob s3://no-such-bucket-ashd/t/s/workspace.tar.gz")):
        store.put("t/s/workspace.tar.gz", tmp_path / "src")
