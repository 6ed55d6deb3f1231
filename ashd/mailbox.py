"""Mailbox: items handed from loop callbacks to one reader, whose wait may end after a quiet period.

The data plane's hand-offs (a bridge line to its turn, a committed frame to its SSE response)
go through one of these instead of an ``asyncio.Queue`` read by a helper task: the writer's
:meth:`Mailbox.put` wakes the reader's own task, so an item costs one step of the loop, and a
quiet period is a timer on that wake-up (no task, no ``wait_for``). :data:`IDLE` is the marker
a reader yields for each quiet period (the turn watchdog nudges its agent, an SSE stream writes
a keep-alive). Loop thread only; one reader at a time.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Final, Generic, TypeVar

T = TypeVar("T")


class Idle:
    """A quiet period passed without an item."""


IDLE: Final = Idle()


class Mailbox(Generic[T]):
    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._wake: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T) -> None:
        self._items.append(item)
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def take(self) -> T:
        """The oldest item. Raises IndexError when there is none (see :meth:`wait`)."""
        return self._items.popleft()

    async def wait(self, quiet_s: float | None = None) -> bool:
        """Until an item is there (True at once if one is), or ``quiet_s`` passed without one
        (False; never with ``quiet_s`` None)."""
        if self._items:
            return True
        loop = asyncio.get_running_loop()
        self._wake = wake = loop.create_future()
        timer = loop.call_later(quiet_s, _wake_up, wake) if quiet_s is not None else None
        try:
            await wake
        finally:
            self._wake = None
            if timer is not None:
                timer.cancel()
        return bool(self._items)


def _wake_up(wake: asyncio.Future[None]) -> None:
    if not wake.done():
        wake.set_result(None)
