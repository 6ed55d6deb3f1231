"""A short-lived cache of authenticated API keys (loop thread only).

Every request authenticates; without a cache that is a pool checkout and a key lookup on the
store before a message can even reach its session (~1.6 ms of the message path). A key that
authenticated is remembered for ``ttl_s``; only successes are kept, so a key minted a moment
ago works at once and a wrong guess is always looked up (and throttled).

Revocation stays immediate in this process: deleting a key forgets it here in the same
request (``forget_key``), before the 204 is sent. A key deleted by *another* ashd on the same
database is honoured here for at most ``ttl_s`` more. Scopes change only at start-up (the
bootstrap key's upgrade), before requests are served.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

from ashd.http.auth import Principal

TTL_S = 5.0
MAX_ENTRIES = 4096


class KeyCache:
    def __init__(self, ttl_s: float = TTL_S, clock: Callable[[], float] = time.monotonic,
                 max_entries: int = MAX_ENTRIES) -> None:
        self._ttl = ttl_s
        self._clock = clock
        self._max = max_entries
        self._entries: dict[bytes, tuple[Principal, float]] = {}
        self.generation = 0  # advanced by every revocation (see ``put``)

    def get(self, header: str) -> Principal | None:
        """The principal this Authorization header authenticated as, if still fresh."""
        digest = _digest(header)
        hit = self._entries.get(digest)
        if hit is None:
            return None
        principal, expires = hit
        if self._clock() >= expires:
            del self._entries[digest]
            return None
        return principal

    def put(self, header: str, principal: Principal, generation: int) -> None:
        """Remember a lookup that began at ``generation``; dropped if a key was revoked since
        (the lookup may have read the key just before its delete committed)."""
        if generation != self.generation:
            return
        if len(self._entries) >= self._max:
            self._entries.clear()  # a flood of distinct valid keys: start over rather than grow
        self._entries[_digest(header)] = (principal, self._clock() + self._ttl)

    def forget_key(self, key_id: str) -> None:
        """The key ``key_id`` was deleted: every cached use of it is refused from now on."""
        self.generation += 1
        stale = [d for d, (p, _) in self._entries.items() if p.key_id == key_id]
        for digest in stale:
            del self._entries[digest]


def _digest(header: str) -> bytes:
    """Keep no plaintext key in the table (a memory dump shows digests only)."""
    return hashlib.sha256(header.encode()).digest()
