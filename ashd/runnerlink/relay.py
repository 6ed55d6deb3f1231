"""Relay one bridge-socket connection through a link channel, frame for frame (loop thread).

Used at both ends: on the coordinator between the local unix socket a session's
:class:`~ashd.wire.link.BridgeLink` connected to and the channel; on the runner between the
channel and the sandbox's real bridge socket. Lines are forwarded as read, never decoded; a
line longer than :data:`ashd.wire.protocol.MAX_FRAME_BYTES` ends the relay (as the bridge
link itself would). Each direction awaits its writer (``drain``/the link send) before reading
on, so a slow side slows the other instead of buffering without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ashd.runnerlink.mux import Channel, LinkClosed
from ashd.wire import protocol

log = logging.getLogger(__name__)


async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, channel: Channel) -> None:
    """Run until either side closes; then close both. Never raises."""
    up = asyncio.ensure_future(_socket_to_channel(reader, channel))
    down = asyncio.ensure_future(_channel_to_socket(channel, writer))
    try:
        await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (up, down):
            task.cancel()
        await asyncio.gather(up, down, return_exceptions=True)
        channel.close()
        writer.close()


async def _socket_to_channel(reader: asyncio.StreamReader, channel: Channel) -> None:
    try:
        while line := await reader.readline():
            await channel.send(line)
    except (ConnectionError, LinkClosed, ValueError, asyncio.LimitOverrunError) as exc:
        log.info("relay channel %d: socket side ended: %s", channel.id, exc or type(exc).__name__)


async def _channel_to_socket(channel: Channel, writer: asyncio.StreamWriter) -> None:
    try:
        while (frame := await channel.receive()) is not None:
            writer.write(frame)
            await writer.drain()
    except ConnectionError as exc:
        log.info("relay channel %d: socket closed: %s", channel.id, exc)


async def open_unix(path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to a bridge socket with the protocol's frame bound. Raises OSError."""
    return await asyncio.open_unix_connection(path, limit=protocol.MAX_FRAME_BYTES)


def close_quietly(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.close()
