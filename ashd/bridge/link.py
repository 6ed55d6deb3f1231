"""ashd's end of one bridge socket (asyncio; runs on the daemon's IOLoop).

The data plane reads the bridge's NDJSON here and nowhere else. A link carries one turn
at a time; the session actor guarantees that. If the bridge dies mid-turn the turn ends
with an ``Error`` and a synthetic ``Done`` at once, so no stream hangs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from ashd.bridge import protocol

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0


class BridgeGone(ConnectionError):
    """The bridge socket closed or never answered."""


class BridgeLink:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ready: protocol.Ready) -> None:
        self._reader = reader
        self._writer = writer
        self.ready = ready

    @classmethod
    async def connect(cls, socket_path: str, timeout: float = CONNECT_TIMEOUT_S) -> BridgeLink:
        """Connect and wait for the ``ready`` event. Raises BridgeGone."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(socket_path, limit=protocol.MAX_FRAME_BYTES), timeout
            )
            line = await asyncio.wait_for(reader.readline(), timeout)
            event = protocol.decode_event(line) if line else None
        except (TimeoutError, OSError, protocol.ProtocolError) as exc:
            raise BridgeGone(f"bridge at {socket_path} did not answer: {exc or type(exc).__name__}") from exc
        if not isinstance(event, protocol.Ready):
            writer.close()
            raise BridgeGone(f"bridge at {socket_path} sent {event!r} instead of ready")
        return cls(reader, writer, event)

    @property
    def closed(self) -> bool:
        return self._writer.is_closing() or self._reader.at_eof()

    async def turn(self, query: protocol.Query) -> AsyncIterator[protocol.Event]:
        """Send a query and yield its events up to and including ``Done``.

        Never raises for a dead bridge: it yields ``Error`` then ``Done`` instead.
        """
        try:
            await self._send(query)
        except (ConnectionError, RuntimeError) as exc:
            yield protocol.Error(f"bridge is not reachable: {exc}")
            yield protocol.Done(self.ready.session_id)
            return
        while True:
            try:
                line = await self._reader.readline()
                event = protocol.decode_event(line) if line else None
            except (ConnectionError, ValueError, asyncio.LimitOverrunError, protocol.ProtocolError) as exc:
                log.error("bridge %s: bad frame, closing link: %s", self.ready.session_id, exc)
                self.close()
                event = None
            if event is None:
                yield protocol.Error("the agent process exited unexpectedly during the turn")
                yield protocol.Done(self.ready.session_id)
                return
            yield event
            if isinstance(event, protocol.Done):
                return

    async def interrupt(self) -> None:
        await self._send(protocol.Interrupt())

    async def shutdown(self) -> None:
        try:
            await self._send(protocol.Shutdown())
        except (ConnectionError, RuntimeError):
            pass
        self.close()

    async def _send(self, command: protocol.Command) -> None:
        if self._writer.is_closing():
            raise BridgeGone("bridge link is closed")
        self._writer.write(protocol.encode(command))
        await self._writer.drain()

    def close(self) -> None:
        self._writer.close()
