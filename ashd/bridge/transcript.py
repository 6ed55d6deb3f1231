"""The bridge's SDK session store: transcript appends go to ashd over the bridge socket.

The SDK mirrors every transcript line the CLI writes and calls ``append`` in batches (at
each result). Each append is one ``transcript`` event; ashd acknowledges it on receipt and
commits the entries before it sends the turn's ``done`` (so the database write is not on
the path to the result, and a finished turn's conversation is stored). ``load`` returns None on purpose: before a cold
start ashd itself writes the stored transcript into the CLI's config dir, and the SDK
then falls through to a plain ``--resume`` of that file (see ``ashd/sandbox/transcripts.py``).
Runs on the bridge's loop.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any, cast

from claude_agent_sdk.types import SessionKey, SessionStore, SessionStoreEntry

from ashd.wire import protocol

ACK_TIMEOUT_S = 15.0

Send = Callable[[protocol.Event], Awaitable[bool]]


class RemoteSessionStore(SessionStore):
    def __init__(self, send: Send) -> None:
        self._send = send
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[str | None]] = {}

    async def append(self, key: SessionKey, entries: list[SessionStoreEntry]) -> None:
        """Raises RuntimeError when ashd is not connected or reports a failure (the SDK
        retries, then reports a MirrorErrorMessage; the local transcript stays complete)."""
        if not entries:
            return
        req_id = next(self._ids)
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = future
        try:
            raw = cast(list[dict[str, Any]], entries)
            if not await self._send(protocol.Transcript(req_id, str(key.get("subpath") or ""), raw)):
                raise RuntimeError("ashd is not connected; transcript entries not stored")
            error = await asyncio.wait_for(future, ACK_TIMEOUT_S)
        finally:
            self._pending.pop(req_id, None)
        if error:
            raise RuntimeError(f"ashd could not store transcript entries: {error}")

    async def load(self, key: SessionKey) -> list[SessionStoreEntry] | None:
        return None

    def acknowledged(self, ack: protocol.TranscriptAck) -> None:
        future = self._pending.get(ack.req_id)
        if future is not None and not future.done():
            future.set_result(ack.error)
