"""The turn watchdog's clock: a turn's events, with a marker for every quiet period.

:func:`watched` re-yields the events of an async iterator and yields :data:`IDLE` each time
``idle_s`` pass without one, so the turn can nudge (interrupt) and then kill an agent that
stopped answering (see :class:`ashd.runtime.turn.Turn`). The source is read by a task of its own:
cancelling a ``wait_for`` on the source itself would close it. Loop thread only.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Final, TypeVar

T = TypeVar("T")


class Idle:
    """``idle_s`` passed without an event."""


IDLE: Final = Idle()
_END: Final = object()


async def watched(source: AsyncIterator[T], idle_s: float, *,
                  on_demand: bool = False) -> AsyncGenerator[T | Idle, None]:
    """Every item of ``source``, and :data:`IDLE` after each quiet ``idle_s``. Re-raises what
    the source raises; the source's reader task is cancelled when the caller stops early.

    Items already read are taken without waiting; only an empty queue costs a wake-up future
    and a timer (no task per event: a turn has dozens). ``on_demand``: the source is read only
    when the caller asks for an item and none is queued (one item at a time: backpressure), and
    a source with ``aclose`` is closed when the caller stops early, before this returns."""
    loop = asyncio.get_running_loop()
    items: deque[object] = deque()
    wake: asyncio.Future[None] | None = None
    asked: asyncio.Future[None] | None = loop.create_future() if on_demand else None

    def put(item: object) -> None:
        items.append(item)
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def pump() -> None:
        nonlocal asked
        try:
            iterator = aiter(source)
            while True:
                if asked is not None:
                    await asked
                    asked = loop.create_future()
                try:
                    item = await anext(iterator)
                except StopAsyncIteration:
                    break
                put(item)
        except Exception as exc:  # handed to the reader, which re-raises it
            put(exc)
        finally:
            put(_END)

    reader = asyncio.ensure_future(pump())
    try:
        while True:
            if not items:
                if asked is not None and not asked.done():
                    asked.set_result(None)
                wake = loop.create_future()
                timer = loop.call_later(idle_s, _wake_up, wake)
                try:
                    await wake
                finally:
                    timer.cancel()
                if not items:
                    yield IDLE
                    continue
            item = items.popleft()
            if item is _END:
                return
            if isinstance(item, Exception):
                raise item
            yield item  # type: ignore[misc]  # only the source's items and the markers are queued
    finally:
        reader.cancel()
        if on_demand:
            await asyncio.wait({reader})  # the source is not inside a read any more
            close = getattr(source, "aclose", None)
            if close is not None:
                await close()


def _wake_up(wake: asyncio.Future[None]) -> None:
    if not wake.done():
        wake.set_result(None)
