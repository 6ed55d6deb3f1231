"""One error tree for ashd.

Every error a client can see is an :class:`AshError` subclass. Each class maps once, here,
to an HTTP status and a stable machine-readable code; handlers never pick statuses
themselves. The message is written for the person who must fix the request.
"""

from __future__ import annotations


class AshError(Exception):
    """Root of every error ashd reports to a client or an operator."""

    status: int = 500
    code: str = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(AshError):
    status, code = 400, "bad_request"


class Unauthorized(AshError):
    status, code = 401, "unauthorized"


class Forbidden(AshError):
    """Authenticated, but the API key lacks the scope the route needs."""

    status, code = 403, "forbidden"


class NotFound(AshError):
    status, code = 404, "not_found"


class Conflict(AshError):
    """The object is in a state that forbids the request right now (e.g. a turn is running)."""

    status, code = 409, "conflict"


class Gone(AshError):
    status, code = 410, "gone"


class PayloadTooLarge(AshError):
    status, code = 413, "payload_too_large"


class Unprocessable(AshError):
    status, code = 422, "unprocessable"


class Unavailable(AshError):
    """Temporarily unable to serve (capacity, shutting down). Carries a retry hint."""

    status, code = 503, "unavailable"

    def __init__(self, message: str, retry_after_s: int = 5) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class InsufficientStorage(Unavailable):
    """The data disk cannot hold another workspace image of this quota without eating into
    the reserve kept for the store and snapshots. Nothing was created; retry after freeing room."""

    status, code = 507, "insufficient_storage"


class RateLimited(AshError):
    """Too many requests from one API key (or client address); carries a retry hint."""

    status, code = 429, "rate_limited"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class SandboxFailed(AshError):
    """A sandbox or its bridge could not be started or died."""

    status, code = 502, "sandbox_failed"


class StartTimedOut(SandboxFailed):
    """The agent process was still starting when its readiness timeout passed: the host was
    slow (load), not the process broken. Retried, but never charged to a restart budget."""


class ConfigError(AshError):
    """Invalid configuration; the message names the key and the source."""

    status, code = 500, "config"


class SnapshotError(AshError):
    """A snapshot could not be saved, stored or restored."""

    status, code = 500, "snapshot_failed"


class SnapshotSkipped(SnapshotError):
    """A snapshot deliberately not taken; the previous one stays. ``reason`` labels the event
    (``snapshot_skipped``) and the metric (``ashd_snapshot_skipped_total``)."""

    status, code = 507, "snapshot_skipped"
    reason = "skipped"

    def __init__(self, message: str, limit_bytes: int = 0) -> None:
        super().__init__(message)
        self.limit_bytes = limit_bytes


class SnapshotTooLarge(SnapshotSkipped):
    """The workspace (or an archive being restored) exceeds the size limit (snapshot.max_bytes)."""

    status, code = 507, "snapshot_too_large"
    reason = "too_large"


class SnapshotNoRoom(SnapshotSkipped):
    """Saving would take the data disk below the room kept for the store (half the disk reserve)."""

    status, code = 507, "snapshot_no_room"
    reason = "disk_space"


class UnsafeArchive(SnapshotError):
    """An archive holds a member that could write outside its target; nothing was restored."""

    status, code = 500, "snapshot_unsafe"


class BlobStoreError(SnapshotError):
    """The blob store failed (I/O error, S3 error other than a missing key)."""

    status, code = 502, "blob_store"
