"""Waking streams that follow a session across turns (``GET .../stream?follow=true``).

A following stream waits between turns; :meth:`TurnBell.next_turn` gives it a future that
resolves when the session's next turn starts (the runtime rings the bell when it starts one).
Taking the future *before* replaying stored events means a turn that starts during the
replay is never missed. Loop thread only.
"""

from __future__ import annotations

import asyncio


class TurnBell:
    def __init__(self) -> None:
        self._waiting: dict[str, set[asyncio.Future[None]]] = {}

    def next_turn(self, session_id: str) -> asyncio.Future[None]:
        """Resolves when the next turn of ``session_id`` starts; cancel it (or let it resolve)
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
        """A turn of ``session_id`` started: wake everyone waiting for it."""
        for future in self._waiting.pop(session_id, set()):
            if not future.done():
                future.set_result(None)

    def waiting(self, session_id: str) -> int:
        return len(self._waiting.get(session_id, ()))
