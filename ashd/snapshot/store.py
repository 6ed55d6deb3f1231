"""Blob stores for snapshot archives: a local directory (default) or S3-compatible storage.

Every method blocks (file or network I/O): call from a worker thread, never the event loop.
Both stores are safe to share between threads; a key written concurrently ends up holding
one complete blob (last writer wins), never a mix.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from ashd.errors import BlobStoreError, ConfigError

_KEY = re.compile(r"^[A-Za-z0-9._/-]+$")
_KEY_MAX = 1024  # S3's limit, in bytes; keys are ASCII here
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})
DEFAULT_S3_REGION = "us-east-1"


class BlobStore(Protocol):
    """Where snapshot archives live, by key (``tenant/session/workspace.tar.gz``)."""

    def put(self, key: str, path: Path) -> None:
        """Store the file at ``path`` under ``key``, replacing any blob there. The file is left as is."""

    def get(self, key: str, dest: Path) -> bool:
        """Write the blob to ``dest``; False (``dest`` untouched) if there is none."""

    def delete(self, key: str) -> None:
        """Remove the blob; no error if there is none."""

    def exists(self, key: str) -> bool:
        """True if a blob is stored under ``key``."""


def validate_key(key: str) -> str:
    """Return ``key`` if it is ``segment/segment/...`` of ``[A-Za-z0-9._-]``, else raise ValueError.

    Empty segments, ``.`` and ``..`` are refused, so a key can never name a path outside
    the store's root or prefix.
    """
    if len(key) > _KEY_MAX or not _KEY.match(key):
        raise ValueError(f"invalid blob key {key!r}: use 1-{_KEY_MAX} characters of A-Z a-z 0-9 . _ / -")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(f"invalid blob key {key!r}: empty, '.' and '..' segments are not allowed")
    return key


class LocalBlobStore:
    """Blobs as files under ``root``. Writes are atomic (temporary file, fsync, rename)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    def path_for(self, key: str) -> Path:
        """The file holding ``key``. Raises ValueError for an invalid key or one that resolves
        outside the root (e.g. through a symlinked directory under it)."""
        path = self.root / validate_key(key)
        root = os.path.realpath(self.root)
        if not os.path.realpath(path).startswith(root.rstrip(os.sep) + os.sep):
            raise ValueError(f"blob key {key!r} resolves outside {self.root}")
        return path

    def put(self, key: str, path: Path) -> None:
        """Raises ValueError for a bad key, BlobStoreError on I/O errors."""
        dest = self.path_for(key)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
            try:
                with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, dest)
            except BaseException:
                os.unlink(tmp)
                raise
            _fsync_dir(dest.parent)
        except OSError as exc:
            raise BlobStoreError(f"could not store blob {key} under {self.root}: {exc}") from exc

    def get(self, key: str, dest: Path) -> bool:
        """Raises ValueError for a bad key, BlobStoreError on I/O errors."""
        src = self.path_for(key)
        try:
            with open(src, "rb") as f, open(dest, "wb") as out:
                shutil.copyfileobj(f, out, 1 << 20)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise BlobStoreError(f"could not read blob {key} under {self.root}: {exc}") from exc
        return True

    def delete(self, key: str) -> None:
        """Removes the blob and then its directories, up to the root, while they are empty."""
        path = self.path_for(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise BlobStoreError(f"could not delete blob {key} under {self.root}: {exc}") from exc
        parent = path.parent
        while parent != self.root and self.root in parent.parents:
            try:
                parent.rmdir()
            except OSError:  # not empty (or already gone): stop
                break
            parent = parent.parent

    def exists(self, key: str) -> bool:
        return self.path_for(key).is_file()


class S3BlobStore:
    """Blobs in S3 or an S3-compatible server, under ``s3://bucket/prefix/``.

    ``endpoint_url`` targets an S3-compatible server (MinIO, Ceph, moto, GCS interop) and
    switches to path-style addressing. Credentials come from boto3's usual chain
    (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, shared config, instance role).
    The bucket must exist. Requires the ``s3`` extra (boto3); raises ConfigError without it
    or for a malformed URL.
    """

    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        client: Any = None,
    ) -> None:
        self.bucket, self.prefix = parse_s3_url(url)
        self.url = url
        self.endpoint_url = endpoint_url
        self._client = client if client is not None else _make_client(endpoint_url, region or DEFAULT_S3_REGION)

    def __repr__(self) -> str:
        return f"S3BlobStore({self.url!r}, endpoint_url={self.endpoint_url!r})"

    def object_key(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def put(self, key: str, path: Path) -> None:
        """Raises ValueError for a bad key, BlobStoreError for S3 or network errors."""
        with self._errors("store", key):
            self._client.upload_file(str(path), self.bucket, self.object_key(key))

    def get(self, key: str, dest: Path) -> bool:
        """Raises ValueError for a bad key, BlobStoreError for S3 or network errors."""
        with self._errors("read", key):
            try:
                self._client.download_file(self.bucket, self.object_key(key), str(dest))
            except Exception as exc:
                if _is_missing(exc):
                    return False
                raise
        return True

    def delete(self, key: str) -> None:
        with self._errors("delete", key):
            self._client.delete_object(Bucket=self.bucket, Key=self.object_key(key))

    def exists(self, key: str) -> bool:
        with self._errors("check", key):
            try:
                self._client.head_object(Bucket=self.bucket, Key=self.object_key(key))
            except Exception as exc:
                if _is_missing(exc):
                    return False
                raise
        return True

    @contextlib.contextmanager
    def _errors(self, verb: str, key: str) -> Any:
        from boto3.exceptions import Boto3Error  # upload_file wraps ClientError in S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except (Boto3Error, BotoCoreError, ClientError) as exc:
            where = f"s3://{self.bucket}/{self.prefix}{key}"
            raise BlobStoreError(f"could not {verb} blob {where}: {exc}") from exc


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (``bucket``, ``some/prefix/``). Raises ConfigError."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc or parsed.query or parsed.fragment:
        raise ConfigError(f"snapshot URL (ASH_SNAPSHOT_URL) must look like s3://bucket/prefix/, got {url!r}")
    prefix = parsed.path.strip("/")
    if prefix:
        validate_key(prefix)
    return parsed.netloc, f"{prefix}/" if prefix else ""


def blob_store_from_url(
    url: str | None,
    data_dir: Path,
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
) -> BlobStore:
    """The store ``ASH_SNAPSHOT_URL`` names: None or "" -> ``<data>/snapshots``; ``file:///dir``
    -> that directory; ``s3://bucket/prefix/`` -> S3, with ``endpoint_url`` and ``region``
    falling back to ``ASH_S3_ENDPOINT`` and ``ASH_S3_REGION`` (default us-east-1).
    Does no I/O except creating the S3 client. Raises ConfigError for anything else.
    """
    if not url:
        return LocalBlobStore(Path(data_dir) / "snapshots")
    parsed = urlparse(url)
    if parsed.scheme == "file":
        path = unquote(parsed.path)
        if parsed.netloc not in ("", "localhost") or not path.startswith("/"):
            raise ConfigError(f"snapshot URL (ASH_SNAPSHOT_URL) must be file:///absolute/dir, got {url!r}")
        return LocalBlobStore(Path(path))
    if parsed.scheme == "s3":
        return S3BlobStore(
            url,
            endpoint_url=endpoint_url or os.environ.get("ASH_S3_ENDPOINT") or None,
            region=region or os.environ.get("ASH_S3_REGION") or None,
        )
    raise ConfigError(
        f"snapshot URL (ASH_SNAPSHOT_URL) {url!r} is not supported: use file:///dir or s3://bucket/prefix/ "
        "(for GCS, use its S3-compatible endpoint with ASH_S3_ENDPOINT)"
    )


def _make_client(endpoint_url: str | None, region: str) -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise ConfigError("s3:// snapshot URLs need boto3: pip install 'ashd[s3]'") from None
    config = Config(
        region_name=region,
        connect_timeout=5,
        read_timeout=60,
        retries={"max_attempts": 3, "mode": "standard"},
        s3={"addressing_style": "path"} if endpoint_url else None,
    )
    # A client of its own session: boto3's default session is not thread-safe, clients are.
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)


def _is_missing(exc: Exception) -> bool:
    response = getattr(exc, "response", None)
    code = str((response or {}).get("Error", {}).get("Code", ""))
    return code in _MISSING


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
