"""Errors of the snapshot package, in ashd's one error tree."""

from __future__ import annotations

from ashd.errors import AshError


class SnapshotError(AshError):
    """A snapshot could not be saved, stored or restored."""

    status, code = 500, "snapshot_failed"


class SnapshotTooLarge(SnapshotError):
    """The workspace (or an archive being restored) exceeds the configured size limit."""

    status, code = 507, "snapshot_too_large"


class UnsafeArchive(SnapshotError):
    """An archive holds a member that could write outside its target; nothing was restored."""

    status, code = 500, "snapshot_unsafe"


class BlobStoreError(SnapshotError):
    """The blob store failed (I/O error, S3 error other than a missing key)."""

    status, code = 502, "blob_store"
