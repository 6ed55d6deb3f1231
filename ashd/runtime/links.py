"""The bridge link of one live session, on the IOLoop (loop thread only).

A session has at most one sandbox at a time, so it has at most one link: a turn, an
interrupt and an exec share it. The link mirrors the transcript entries its bridge sends
into the store (one write per SDK flush: at once on SQLite when the writer thread is idle,
else on that thread) before acknowledging them. Where the bridge listens is local knowledge
(a socket path); it stays here.
"""

from __future__ import annotations

import asyncio

from ashd.actors.messages import TurnGrant
from ashd.events import compact_json
from ashd.runtime.offload import Offload
from ashd.store import Store
from ashd.wire import protocol
from ashd.wire.link import BridgeLink, TranscriptSink


class SessionLink:
    def __init__(self, store: Store, offload: Offload) -> None:
        self._store = store
        self._offload = offload
        self._link: BridgeLink | None = None
        self._pid = 0  # the grant's agent process the link was made for (a remote one's is a handle number)
        self._connecting = asyncio.Lock()

    async def get(self, grant: TurnGrant) -> BridgeLink:
        """The link to a grant's bridge; reconnects if closed or the bridge was replaced.

        One connect at a time: the bridge drops its older connection when a new one arrives,
        so a turn and an exec connecting together must share one link. Raises BridgeGone.
        """
        async with self._connecting:
            link = self._link
            if link is not None and (link.closed or self._pid != grant.pid):
                link.close()
                link = None
            if link is None:
                link = await BridgeLink.connect(grant.socket_path, _sink(self._store, self._offload, grant))
                self._link, self._pid = link, grant.pid
            return link

    def ready(self, grant: TurnGrant) -> BridgeLink | None:
        """The link to a grant's bridge if it is up (no connect in progress), else None."""
        link = self._link
        if link is None or link.closed or self._pid != grant.pid or self._connecting.locked():
            return None
        return link

    def drop(self) -> None:
        """Close the link (its bridge is gone or being replaced). Idempotent."""
        link, self._link = self._link, None
        if link is not None:
            link.close()


def _sink(store: Store, offload: Offload, grant: TurnGrant) -> TranscriptSink:
    async def save(event: protocol.Transcript) -> None:
        lines = [compact_json(entry) for entry in event.entries]
        tenant_id, session_id, subpath = grant.tenant_id, grant.session_id, event.subpath
        if not offload.write_at_once(lambda: store.append_transcript_at_once(tenant_id, session_id, subpath, lines)):
            await offload.write(store.append_transcript, tenant_id, session_id, subpath, lines)

    return save
