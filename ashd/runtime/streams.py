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

The HTTP side asks for ``batched`` items: a replay page (up to :data:`REPLAY_PAGE` frames) or
every frame of the running turn waiting at that moment, joined into one write. Full replay
pages are immutable (ids only grow, batches commit in order), so their encoded bytes are kept
in a small cache (:class:`PageCache`) and shared by every subscriber replaying the same stream.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Callable

from ashd.events import frame
from ashd.runtime.following import TurnBell
from ashd.runtime.offload import Offload
from ashd.runtime.turn import Frame, Turn
from ashd.runtime.watchdog import IDLE, Idle
from ashd.states import SessionStatus
from ashd.store import Store

REPLAY_PAGE = 500
PAGE_CACHE_BYTES = 32 * 1024 * 1024  # encoded full replay pages kept for other subscribers
Page = tuple[list[Frame], bytes]  # a page's frames, and all of them joined


class PageCache:
    """Full replay pages by (tenant, session, after), least recently used dropped first."""

    def __init__(self, limit_bytes: int = PAGE_CACHE_BYTES) -> None:
        self._pages: OrderedDict[tuple[str, str, int], Page] = OrderedDict()
        self._bytes = 0
        self._limit = limit_bytes

    def get(self, key: tuple[str, str, int]) -> Page | None:
        page = self._pages.get(key)
        if page is not None:
            self._pages.move_to_end(key)
        return page

    def put(self, key: tuple[str, str, int], page: Page) -> None:
        if key in self._pages:
            return
        self._pages[key] = page
        self._bytes += len(page[1])
        while self._bytes > self._limit and self._pages:
            _, dropped = self._pages.popitem(last=False)
            self._bytes -= len(dropped[1])


class SessionStreams:
    def __init__(self, store: Store, offload: Offload, bell: TurnBell, live_turn: Callable[[str], Turn | None],
                 heartbeat_s: float) -> None:
        self._store = store
        self._offload = offload
        self._bell = bell
        self._live_turn = live_turn
        self._heartbeat_s = heartbeat_s
        self._pages = PageCache()

    def subscribe(self, tenant_id: str, session_id: str, after: int = 0, *, follow: bool = False,
                  batched: bool = False) -> AsyncGenerator[bytes | Idle, None]:
        """SSE frames (bytes) with ids above ``after``, and :data:`IDLE` every quiet heartbeat.
        ``batched``: an item may hold several frames (see the module docstring)."""
        return with_heartbeats(self._frames(tenant_id, session_id, after, follow, batched), self._heartbeat_s)

    async def _frames(self, tenant_id: str, session_id: str, after: int, follow: bool,
                      batched: bool) -> AsyncGenerator[bytes, None]:
        last = after
        while True:
            bell = self._bell.next_turn(session_id) if follow else None
            try:
                async for seq, data in self._replay(tenant_id, session_id, last, batched):
                    yield data
                    last = seq
                turn = self._live_turn(session_id)
                source: AsyncIterator[Frame]
                if turn is not None and not turn.finished:
                    source = turn.subscribe(after=last, batched=batched)
                else:
                    # No turn runs, so every frame of the last one is stored (a turn ends only
                    # after its commit), also those stored after the replay above was read.
                    source = self._replay(tenant_id, session_id, last, batched)
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

    async def _replay(self, tenant_id: str, session_id: str, after: int, batched: bool) -> AsyncIterator[Frame]:
        """Stored frames after ``after``: one by one, or (``batched``) a page per item."""
        last = after
        while True:
            frames, joined = await self._page(tenant_id, session_id, last)
            if frames and batched:
                yield frames[-1][0], joined
            elif frames:
                for item in frames:
                    yield item
            if len(frames) < REPLAY_PAGE:
                return
            last = frames[-1][0]

    async def _page(self, tenant_id: str, session_id: str, after: int) -> Page:
        key = (tenant_id, session_id, after)
        page = self._pages.get(key)
        if page is None:
            page = await self._offload.read(self._read_page, tenant_id, session_id, after)
            if len(page[0]) == REPLAY_PAGE:  # a full page never changes; the last one may grow
                self._pages.put(key, page)
        return page

    def _read_page(self, tenant_id: str, session_id: str, after: int) -> Page:
        """On a reader thread: the rows, encoded as frames."""
        rows = self._store.list_stream_events(tenant_id, session_id, after, REPLAY_PAGE)
        frames = [(row.seq, frame(row.event, row.data, row.seq)) for row in rows]
        return frames, b"".join(data for _, data in frames)


async def turn_frames(turn: Turn, after: int = 0, *, batched: bool = False) -> AsyncGenerator[bytes, None]:
    """One turn's SSE frames with ids above ``after``, to its ``done``."""
    async for _, data in turn.subscribe(after=after, batched=batched):
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
