"""One running turn on the IOLoop: bridge events in, SSE frames and stored rows out.

A turn is independent of the HTTP request that started it: if the client disconnects,
the turn still runs to its end and everything is stored. Durability follows the design:
the user message is committed before the model is called, and ``done`` is published only
after every row of the turn is committed (writes go through the single writer thread,
so awaiting the last one awaits them all).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import ujson

from ashd import __version__
from ashd.actors.messages import TurnGrant
from ashd.bridge import protocol
from ashd.bridge.link import BridgeGone
from ashd.events import (
    SSEEvent,
    stored_message,
    stream_events,
    timeline_events,
    user_message,
)
from ashd.http.context import AppContext
from ashd.http.turnlog import TurnLog
from ashd.options import MessageOptions

if TYPE_CHECKING:
    import pykka

    from ashd.actors.session import SessionActor

log = logging.getLogger(__name__)


class Turn:
    def __init__(
        self,
        ctx: AppContext,
        tenant_id: str,
        grant: TurnGrant,
        actor: pykka.ActorProxy[SessionActor],
        options: MessageOptions,
    ) -> None:
        self._ctx = ctx
        self._tenant = tenant_id
        self._grant = grant
        self._actor = actor
        self._options = options
        self._frames: list[bytes] = []
        self._subscribers: list[asyncio.Queue[bytes | None]] = []
        self._log = TurnLog(ctx.offload, ctx.store, tenant_id, grant.session_id)
        self._finished = False

    @property
    def session_id(self) -> str:
        return self._grant.session_id

    async def subscribe(self) -> AsyncIterator[bytes]:
        """Every frame of the turn, from the first, until it ends."""
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        for past in self._frames:
            queue.put_nowait(past)
        if self._finished:
            queue.put_nowait(None)
        else:
            self._subscribers.append(queue)
        try:
            while True:
                item = await queue.get()
                if item is None:
                    return
                yield item
        finally:
            if queue in self._subscribers:
                self._subscribers.remove(queue)

    async def run(self) -> None:
        """Drive the turn to its end. Never raises; always ends with ``done``."""
        self._publish(SSEEvent("session_start", {"sessionId": self.session_id, "version": __version__}))
        try:
            await self._run()
        except Exception as exc:  # boundary: report on the stream, keep the daemon up
            log.exception("turn of session %s failed", self.session_id)
            self._error(f"internal error during the turn: {type(exc).__name__}")
        try:
            await self._log.flush()
        except Exception:
            log.exception("storing the turn of session %s failed", self.session_id)
            self._publish(SSEEvent("error", {"error": "the turn could not be stored completely"}))
        try:
            await self._ctx.offload.ask(self._actor.end_turn())
        except Exception:
            log.exception("session %s did not acknowledge the end of its turn", self.session_id)
        self._publish(SSEEvent("done", {"sessionId": self.session_id}))
        self._close()

    async def _run(self) -> None:
        store = self._ctx.store
        await self._ctx.offload.write(
            store.append_message, self._tenant, self.session_id, "user", user_message(self._options.content)
        )
        try:
            link = await self._ctx.links.get(self._grant)
        except BridgeGone as exc:
            self._ctx.links.drop(self._grant.sandbox_id)
            self._error(f"the agent process is not reachable: {exc}")
            return
        query = protocol.Query(self._options.content, self._options.include_partial_messages, self._options.model)
        async for event in link.turn(query):
            if isinstance(event, protocol.Message):
                self._on_message(event.data)
            elif isinstance(event, protocol.Error):
                self._error(event.error)
        if link.closed:
            self._ctx.links.drop(self._grant.sandbox_id)

    def _on_message(self, raw: dict[str, Any]) -> None:
        for sse in stream_events(raw):
            self._publish(sse)
        stored = stored_message(raw)
        if stored is not None:
            self._log.add_message(*stored)
        for kind, data in timeline_events(raw):
            self._log.add_event(kind, _json(data))

    def _error(self, message: str) -> None:
        self._publish(SSEEvent("error", {"error": message}))
        self._log.add_event("error", _json({"error": message}))

    def _publish(self, event: SSEEvent) -> None:
        frame = event.encode()
        self._frames.append(frame)
        for queue in self._subscribers:
            queue.put_nowait(frame)

    def _close(self) -> None:
        self._finished = True
        for queue in self._subscribers:
            queue.put_nowait(None)
        self._subscribers.clear()


def _json(data: dict[str, Any]) -> str:
    return str(ujson.dumps(data, ensure_ascii=False, escape_forward_slashes=False))
