"""One asyncio semaphore per key (a session, a tenant), kept only while someone holds or waits
for it: with one slot (the default) a lock, so a check and the write it allows are never
interleaved with another's. Loop thread."""

from __future__ import annotations

import asyncio
import weakref


class KeyedLocks:
    def __init__(self, slots: int = 1) -> None:
        self._slots = slots
        self._locks: weakref.WeakValueDictionary[str, asyncio.Semaphore] = weakref.WeakValueDictionary()

    def __call__(self, key: str) -> asyncio.Semaphore:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Semaphore(self._slots)
        return lock
