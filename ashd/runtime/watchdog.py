"""The turn watchdog's clock: a turn's events, with a marker for every quiet period.

:func:`watched` re-yields the events of an async iterator and yields :data:`IDLE` each time
``idle_s`` pass without one, so the turn can nudge (interrupt) and then kill an agent that
stopped answering (see :class:`ashd.runtime.turn.Turn`). The source is read by a task of its own:
cancelling a ``wait_for`` on the source itself would close it. Loop thread only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Final, TypeVar

T = TypeVar("T")


class Idle:
    """``idle_s`` passed without an event."""


IDLE: Final = Idle()
_END: Final = object()


async def watched(source: AsyncIterator[T], idle_s: float) -> AsyncIterator[T | Idle]:
    """Every item of ``source``, and :data:`IDLE` after each quiet ``idle_s``. Re-raises what
    the source raises; the source's reader task is cancelled when the caller stops early."""
    queue: asyncio.Queue[object] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for item in source:
                queue.put_nowait(item)
        except Exception as exc:  # handed to the reader, which re-raises it
            queue.put_nowait(exc)
        finally:
            queue.put_nowait(_END)

    reader = asyncio.ensure_future(pump())
    try:
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), idle_s)
            except TimeoutError:
                yield IDLE
                continue
            if item is _END:
                return
            if isinstance(item, Exception):
                raise item
            yield item  # type: ignore[misc]  # only the source's items and the markers are queued
    finally:
        reader.cancel()
