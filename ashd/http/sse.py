"""Writing an SSE response: headers, frames with backpressure, heartbeat comments.

``pump`` waits for the next frame without cancelling its source (cancelling a pending
``__anext__`` would close the generator); while nothing arrives it writes a comment line
every ``heartbeat_s`` so proxies keep idle streams open. Loop thread only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import tornado.web
from tornado.iostream import StreamClosedError

HEARTBEAT = b": keep-alive\n\n"
Frame = tuple[int, bytes]


def start(handler: tornado.web.RequestHandler) -> None:
    handler.set_header("Content-Type", "text/event-stream")
    handler.set_header("Cache-Control", "no-cache")
    handler.set_header("X-Accel-Buffering", "no")


async def send(handler: tornado.web.RequestHandler, data: bytes) -> bool:
    """Write and flush (the flush is the backpressure). False once the client is gone."""
    try:
        handler.write(data)
        await handler.flush()
        return True
    except StreamClosedError:
        return False


async def pump(handler: tornado.web.RequestHandler, frames: AsyncIterator[Frame], heartbeat_s: float,
               after: int = 0) -> tuple[int, bool]:
    """Send frames with ids above ``after``; returns (last id sent, client still there)."""
    last = after
    pending: asyncio.Future[Frame] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(frames.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=heartbeat_s)
            if not done:
                if not await send(handler, HEARTBEAT):
                    return last, False
                continue
            try:
                seq, data = pending.result()
            except StopAsyncIteration:
                return last, True
            pending = None
            if seq > last:
                if not await send(handler, data):
                    return last, False
                last = seq
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
