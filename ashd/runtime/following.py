"""Waking streams that wait for something of a session: its next turn, or its next rows.

A waiting stream takes a future from :meth:`SessionBell.next` *before* it reads what it
already has (the store, the running turn), so something that happens during that read is
never missed; the future resolves when the bell is rung for the session. The runtime rings
its turn bell when it starts a turn (``GET .../stream?follow=true`` waits between turns), and
the fan-out (:mod:`ashd.runtime.fanout`) rings its bell when another daemon commits a
session's rows. Loop thread only.
"""

from __future__ import annotations

import asyncio


class SessionBell:
    def __init__(self) -> None:
        self._waiting: dict[str, set[asyncio.Future[None]]] = {}

    def next(self, session_id: str) -> asyncio.Future[None]:
        """Resolves at the next ring for ``session_id``; cancel it (or let it resolve)
        when no longer needed, then call :meth:`forget`."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(session_id, set()).add(future)
        return future

    def forget(self, session_id: str, future: asyncio.Future[None]) -> None:
        waiting = self._waiting.get(session_id)
        if waiting is not None:
            waiting.discard(future)
            if not waiting:
                del self._waiting[session_id]
        if not future.done():
            future.cancel()

    def ring(self, session_id: str) -> None:
        """Wake everyone waiting for ``session_id``."""
        for future in self._waiting.pop(session_id, set()):
            if not future.done():
                future.set_result(None)

    def ring_all(self) -> None:
        """Wake everyone (something may have been missed for any session)."""
        for session_id in list(self._waiting):
            self.ring(session_id)

    def waiting(self, session_id: str) -> int:
        return len(self._waiting.get(session_id, ()))
