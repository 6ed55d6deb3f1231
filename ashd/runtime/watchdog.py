"""A source's items with a marker for every quiet period, for SSE heartbeats.

:func:`watched` re-yields the items of an async iterator and yields :data:`IDLE` each time
``idle_s`` pass without one, so a stream can write a keep-alive. The source is read by a task of
its own (cancelling a ``wait_for`` on the source itself would close it), one item at a time
when the caller asks for one (backpressure). A source that is a :class:`Mailbox` needs none of
this (:meth:`Mailbox.wait` takes the quiet period itself): a running turn's events and frames
go that way. Loop thread only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TypeVar

from ashd.mailbox import IDLE, Idle, Mailbox

T = TypeVar("T")
_END = object()


async def watched(source: AsyncIterator[T], idle_s: float) -> AsyncGenerator[T | Idle, None]:
    """Every item of ``source``, and :data:`IDLE` after each quiet ``idle_s``. Re-raises what
    the source raises. The source is read only when the caller asks for an item and none is
    queued; when the caller stops early its reader task is cancelled and a source with
    ``aclose`` is closed, before this returns."""
    loop = asyncio.get_running_loop()
    items: Mailbox[object] = Mailbox()
    asked: asyncio.Future[None] = loop.create_future()

    async def pump() -> None:
        nonlocal asked
        try:
            iterator = aiter(source)
            while True:
                await asked
                asked = loop.create_future()
                try:
                    item = await anext(iterator)
                except StopAsyncIteration:
                    break
                items.put(item)
        except Exception as exc:  # handed to the reader, which re-raises it
            items.put(exc)
        finally:
            items.put(_END)

    reader = asyncio.ensure_future(pump())
    try:
        while True:
            if not items and not asked.done():
                asked.set_result(None)
            if not await items.wait(idle_s):
                yield IDLE
                continue
            item = items.take()
            if item is _END:
                return
            if isinstance(item, Exception):
                raise item
            yield item  # type: ignore[misc]  # only the source's items and the markers are queued
    finally:
        reader.cancel()
        await asyncio.wait({reader})  # the source is not inside a read any more
        close = getattr(source, "aclose", None)
        if close is not None:
            await close()
