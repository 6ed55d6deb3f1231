"""Kept-alive connections to the model upstream (proxy loop thread only).

Opening a connection per model request cost ~2 ms per call (a TLS handshake far more). A
request takes an idle connection when there is one and gives it back when its reply was
read to the end of its framing (chunked or content-length) and the upstream did not ask to
close; anything else (a reply cut by the budget, an error, a close-delimited body) closes
it. At most ``max_idle`` connections are kept; each is shared by no two requests at once.

A kept connection the upstream closed while idle fails on its next use before any reply
byte; :meth:`UpstreamPool.fresh` is then the caller's one retry.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass

MAX_IDLE = 8
IDLE_S = 30.0  # a kept connection unused this long is closed rather than reused (upstreams close ~60 s)


@dataclass(eq=False)
class Upstream:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    reused: bool = False
    idle_since: float = 0.0


class UpstreamPool:
    def __init__(self, host: str, port: int, tls: bool, max_idle: int = MAX_IDLE) -> None:
        self._host = host
        self._port = port
        self._tls = ssl.create_default_context() if tls else None
        self._max_idle = max_idle
        self._idle: list[Upstream] = []

    async def get(self) -> Upstream:
        """An idle kept connection (``reused``), else a new one. Raises OSError."""
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if now - conn.idle_since < IDLE_S and not conn.writer.is_closing() and not conn.reader.at_eof():
                conn.reused = True
                return conn
            conn.writer.close()
        return await self.fresh()

    async def fresh(self) -> Upstream:
        reader, writer = await asyncio.open_connection(self._host, self._port, ssl=self._tls, limit=256 * 1024)
        return Upstream(reader, writer)

    def put(self, conn: Upstream) -> None:
        """Keep ``conn`` for the next request (its reply was read whole)."""
        if len(self._idle) >= self._max_idle or conn.writer.is_closing():
            conn.writer.close()
            return
        conn.idle_since = time.monotonic()
        self._idle.append(conn)

    def close(self) -> None:
        for conn in self._idle:
            conn.writer.close()
        self._idle.clear()
