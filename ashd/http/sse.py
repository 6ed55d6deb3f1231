"""Writing an SSE response: headers, frames with backpressure, heartbeat comments.

The runtime decides what to send (:meth:`SessionRuntime.subscribe`, ``turn_stream``); this
module only writes it: each frame, and a comment line for each heartbeat mark so proxies keep
idle streams open. Loop thread only.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator

import tornado.web
from tornado.http1connection import HTTP1Connection
from tornado.iostream import StreamClosedError

from ashd.mailbox import Idle

HEARTBEAT = b": keep-alive\n\n"


def start(handler: tornado.web.RequestHandler) -> None:
    # Tornado leaves Nagle's algorithm on until a response finishes: a frame written while the
    # previous one is unacknowledged would wait for the client's delayed ACK (40 ms on Linux).
    connection = handler.request.connection
    if isinstance(connection, HTTP1Connection):
        connection.stream.set_nodelay(True)
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


async def relay(handler: tornado.web.RequestHandler, items: AsyncGenerator[bytes | Idle, None]) -> bool:
    """Send every frame (and a comment per heartbeat mark) until ``items`` ends; then closes it.
    Returns whether the client is still there."""
    async with contextlib.aclosing(items):
        async for item in items:
            if not await send(handler, HEARTBEAT if isinstance(item, Idle) else item):
                return False
    return True
