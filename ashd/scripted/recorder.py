"""Thread-safe record of the requests the scripted model received.

Secrets never enter the record: the ``x-api-key`` and ``authorization`` headers (and
cookies) are replaced by the SHA-256 hex digest of their exact value.
"""

from __future__ import annotations

import copy
import hashlib
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

SECRET_HEADERS = frozenset({"x-api-key", "authorization", "proxy-authorization", "cookie"})


@dataclass(frozen=True)
class RecordedRequest:
    """One request as received.

    ``headers`` has lower-case names and no secrets; ``body`` is the decoded JSON body (or
    None); ``status`` is the HTTP status sent (None while the response is in progress);
    ``disconnected`` is True when the client went away before the response ended.
    """

    method: str
    path: str
    query: str
    headers: dict[str, str]
    x_api_key_sha256: str | None
    authorization_sha256: str | None
    body: Any
    received_at: float
    status: int | None = None
    disconnected: bool = False

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of all fields."""
        return asdict(self)


def _sha256(value: str | None) -> str | None:
    """Hex SHA-256 of ``value`` (UTF-8), or None when the header was absent."""
    return None if value is None else hashlib.sha256(value.encode()).hexdigest()


def make_record(
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: Any,
    received_at: float,
) -> RecordedRequest:
    """Build a record from raw request parts, hashing and dropping secret headers."""
    lowered = {name.lower(): value for name, value in headers.items()}
    return RecordedRequest(
        method=method,
        path=path,
        query=query,
        headers={k: v for k, v in lowered.items() if k not in SECRET_HEADERS},
        x_api_key_sha256=_sha256(lowered.get("x-api-key")),
        authorization_sha256=_sha256(lowered.get("authorization")),
        body=body,
        received_at=received_at,
    )


class Recorder:
    """Append-only list of :class:`RecordedRequest` shared by the IOLoop and test threads.

    All methods take a lock and never block on anything else; readers get deep copies, so
    a caller may mutate what it receives.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RecordedRequest] = []
        self._generation = 0

    def add(self, record: RecordedRequest) -> tuple[int, int]:
        """Store ``record``; returns a handle for :meth:`finish`."""
        with self._lock:
            self._records.append(record)
            return self._generation, len(self._records) - 1

    def finish(self, handle: tuple[int, int], status: int, disconnected: bool) -> None:
        """Set the outcome of a stored record (ignored if :meth:`clear` ran since)."""
        generation, index = handle
        with self._lock:
            if generation == self._generation and index < len(self._records):
                self._records[index] = replace(
                    self._records[index], status=status, disconnected=disconnected
                )

    def snapshot(self) -> list[RecordedRequest]:
        """Deep copies of all records, oldest first."""
        with self._lock:
            return copy.deepcopy(self._records)

    def clear(self) -> None:
        """Forget every record."""
        with self._lock:
            self._records.clear()
            self._generation += 1
