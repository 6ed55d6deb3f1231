"""A session's event stream for a subscriber: replay, then live, then (following) the next turns.

``GET /api/sessions/:id/stream`` replays the stored frames after an id, then follows the
running turn, if any, from its in-memory frames, so each missed event is delivered exactly
once; a turn that ends between the replay and that look is caught up from the store. With
``follow`` it then waits for the session's next turn (the :class:`TurnBell`, rung when a turn
starts) and streams that too, until the session ends. The bell is taken *before* each
replay, so a turn that starts during the replay is never missed.

:func:`with_heartbeats` marks every quiet period with :data:`IDLE`, so the HTTP side writes
a keep-alive comment; it waits for the next item without cancelling its source (cancelling
a pending ``__anext__`` would close the generator) and reads one item at a time, so a slow
client holds the replay back (backpressure). Loop thread only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable

from ashd.events import frame
from ashd.runtime.following import TurnBell
from ashd.runtime.offload import Offload
from ashd.runtime.turn import Frame, Turn
from ashd.runtime.watchdog import IDLE, Idle
from ashd.states import SessionStatus
from ashd.store import Store

REPLAY_PAGE = 500


class SessionStreams:
    def __init__(self, store: Store, offload: Offload, bell: TurnBell, live_turn: Callable[[str], Turn | None],
                 heartbeat_s: float) -> None:
        self._store = store
        self._offload = offload
        self._bell = bell
        self._live_turn = live_turn
        self._heartbeat_s = heartbeat_s

    def subscribe(self, tenant_id: str, session_id: str, after: int = 0, *,
                  follow: bool = False) -> AsyncGenerator[bytes | Idle, None]:
        """SSE frames (bytes) with ids above ``after``, and :data:`IDLE` every quiet heartbeat."""
        return with_heartbeats(self._frames(tenant_id, session_id, after, follow), self._heartbeat_s)

    async def _frames(self, tenant_id: str, session_id: str, after: int, follow: bool) -> AsyncGenerator[bytes, None]:
        last = after
        while True:
            bell = self._bell.next_turn(session_id) if follow else None
            try:
                async for seq, data in self._replay(tenant_id, session_id, last):
                    yield data
                    last = seq
                turn = self._live_turn(session_id)
                source: AsyncIterator[Frame]
                if turn is not None and not turn.finished:
                    source = turn.subscribe(after=last)
                else:
                    # No turn runs, so every frame of the last one is stored (a turn ends only
                    # after its commit), also those stored after the replay above was read.
                    source = self._replay(tenant_id, session_id, last)
                async for seq, data in source:
                    yield data
                    last = seq
                if bell is None or not await self._next_turn(tenant_id, session_id, bell):
                    return
            finally:
                if bell is not None:
                    self._bell.forget(session_id, bell)

    async def _next_turn(self, tenant_id: str, session_id: str, bell: asyncio.Future[None]) -> bool:
        """Wait for the session's next turn: True when it started, False once the session ended."""
        while True:
            current = await self._offload.read(self._store.get_session, tenant_id, session_id)
            if current is None or current.status == SessionStatus.ENDED.value:
                return False
            done, _ = await asyncio.wait({bell}, timeout=self._heartbeat_s)
            if done:
                return True

    async def _replay(self, tenant_id: str, session_id: str, after: int) -> AsyncIterator[Frame]:
        last = after
        while True:
            rows = await self._offload.read(self._store.list_stream_events, tenant_id, session_id, last, REPLAY_PAGE)
            for row in rows:
                yield row.seq, frame(row.event, row.data, row.seq)
                last = row.seq
            if len(rows) < REPLAY_PAGE:
                return


async def turn_frames(turn: Turn, after: int = 0) -> AsyncGenerator[bytes, None]:
    """One turn's SSE frames with ids above ``after``, to its ``done``."""
    async for _, data in turn.subscribe(after=after):
        yield data


async def with_heartbeats(source: AsyncGenerator[bytes, None], every_s: float) -> AsyncGenerator[bytes | Idle, None]:
    """Every item of ``source``, and :data:`IDLE` after each quiet ``every_s``. Closing this
    generator early closes ``source`` (its ``finally`` blocks run now, not at collection)."""
    pending: asyncio.Future[bytes] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(source.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=every_s)
            if not done:
                yield IDLE
                continue
            try:
                item = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            yield item
    finally:
        if pending is not None and not pending.done():
            pending.cancel()  # the source ends inside its pending read
            await asyncio.wait({pending})
        await source.aclose()
