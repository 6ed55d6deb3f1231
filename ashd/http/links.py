"""Open bridge links by sandbox, on the IOLoop (loop thread only).

Each link stores the transcript entries its bridge mirrors (one write per SDK flush, on
the store's writer thread) before acknowledging them.
"""

from __future__ import annotations

import asyncio

from ashd.actors.messages import TurnGrant
from ashd.events import compact_json
from ashd.http.aio import Offload
from ashd.store import Store
from ashd.wire import protocol
from ashd.wire.link import BridgeLink, TranscriptSink


class Links:
    def __init__(self, store: Store, offload: Offload) -> None:
        self._store = store
        self._offload = offload
        self._links: dict[str, BridgeLink] = {}
        self._connecting: dict[str, asyncio.Lock] = {}

    async def get(self, grant: TurnGrant) -> BridgeLink:
        """The link for a grant's sandbox; reconnects if closed or the bridge was replaced.

        One connect at a time per sandbox: the bridge drops its older connection when a new
        one arrives, so a turn and an exec connecting together must share one link.
        Raises BridgeGone.
        """
        lock = self._connecting.setdefault(grant.sandbox_id, asyncio.Lock())
        async with lock:
            return await self._get(grant)

    async def _get(self, grant: TurnGrant) -> BridgeLink:
        link = self._links.get(grant.sandbox_id)
        if link is not None and (link.closed or link.ready.pid != grant.pid):
            link.close()
            link = None
        if link is None:
            link = await BridgeLink.connect(grant.socket_path, self._sink(grant))
            self._links[grant.sandbox_id] = link
        return link

    def _sink(self, grant: TurnGrant) -> TranscriptSink:
        async def store(event: protocol.Transcript) -> None:
            lines = [compact_json(entry) for entry in event.entries]
            await self._offload.write(self._store.append_transcript, grant.tenant_id, grant.session_id,
                                      event.subpath, lines)

        return store

    def drop(self, sandbox_id: str) -> None:
        lock = self._connecting.get(sandbox_id)
        if lock is not None and not lock.locked():
            del self._connecting[sandbox_id]
        link = self._links.pop(sandbox_id, None)
        if link is not None:
            link.close()

    def close_all(self) -> None:
        for sandbox_id in list(self._links):
            self.drop(sandbox_id)
