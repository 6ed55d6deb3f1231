"""A session's event stream for a subscriber: replay, then live, then (following) the next turns.

``GET /api/sessions/:id/stream`` replays the stored frames after an id, then follows the
running turn, if any, from its in-memory frames, so each missed event is delivered exactly
once; a turn that ends between the replay and that look is caught up from the store. With
``follow`` it then waits for the session's next turn (the turn :class:`SessionBell`, rung when
a turn starts) and streams that too, until the session ends. The bell is taken *before* each
replay, so a turn that starts during the replay is never missed.

On a shared Postgres (a :class:`~ashd.runtime.fanout.StreamFanout` is given), a turn this
daemon does not run (another daemon runs it) is followed from the store: after the replay, the
stream waits for the fan-out's notification of the session's next committed rows (or
re-reads after ``fanout.reread_s``), reads the rows after its last id, and so on to the
turn's ``done``; following, it also wakes on those notifications between turns. A turn runs
elsewhere when the last stored event is not ``done``.

The HTTP side asks for ``batched`` items: a replay page (up to :data:`REPLAY_PAGE` frames) or
every frame of the running turn waiting at that moment, joined into one write. Full replay
pages are immutable (ids only grow, batches commit in order), so their encoded bytes are kept
in a small cache (:class:`PageCache`) and shared by every subscriber replaying the same stream.

:func:`with_heartbeats` marks every quiet period with :data:`IDLE`, so the HTTP side writes
a keep-alive comment; it waits for the next item without cancelling its source (cancelling
a pending ``__anext__`` would close the generator) and reads one item at a time, when asked,
so a slow client holds the replay back (backpressure): :func:`~ashd.runtime.watchdog.watched`,
one reader task per stream rather than one task and one ``asyncio.wait`` per item. The
response to a message needs no reader task: :func:`turn_frames` waits on the turn's own
mailbox, with the heartbeat as its quiet period. Loop thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass

from ashd.events import frame
from ashd.mailbox import Idle
from ashd.runtime.fanout import StreamFanout
from ashd.runtime.following import SessionBell
from ashd.runtime.offload import Offload
from ashd.runtime.turn import Frame, Turn
from ashd.runtime.watchdog import watched
from ashd.states import SessionStatus
from ashd.store import Store

REPLAY_PAGE = 500
PAGE_CACHE_BYTES = 32 * 1024 * 1024  # encoded full replay pages kept for other subscribers
Page = tuple[list[Frame], bytes, str | None]  # a page's frames, all of them joined, its last event's name


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




@dataclass
class _Position:
    """Where a subscriber is: the last event id it was given, and that event's name if known."""

    seq: int
    event: str | None = None


class SessionStreams:
    def __init__(self, store: Store, offload: Offload, bell: SessionBell, live_turn: Callable[[str], Turn | None],
                 heartbeat_s: float, fanout: StreamFanout | None = None) -> None:
        self._store = store
        self._offload = offload
        self._bell = bell
        self._live_turn = live_turn
        self._heartbeat_s = heartbeat_s
        self._fanout = fanout
        self._reread_s = fanout.reread_s if fanout is not None else heartbeat_s
        self._pages = PageCache()

    def subscribe(self, tenant_id: str, session_id: str, after: int = 0, *, follow: bool = False,
                  batched: bool = False) -> AsyncGenerator[bytes | Idle, None]:
        """SSE frames (bytes) with ids above ``after``, and :data:`IDLE` every quiet heartbeat.
        ``batched``: an item may hold several frames (see the module docstring)."""
        return with_heartbeats(self._frames(tenant_id, session_id, after, follow, batched), self._heartbeat_s)

    async def _frames(self, tenant_id: str, session_id: str, after: int, follow: bool,
                      batched: bool) -> AsyncGenerator[bytes, None]:
        at = _Position(after)
        fanout = self._fanout
        while True:
            bell = self._bell.next(session_id) if follow else None
            rows = fanout.next_rows(session_id) if follow and fanout is not None else None
            try:
                async for data in self._replay(tenant_id, session_id, at, batched):
                    yield data
                turn = self._live_turn(session_id)
                if turn is not None and not turn.finished:
                    async for seq, data in turn.subscribe(after=at.seq, batched=batched):
                        yield data
                        at.seq = seq
                    at.event = "done"  # a turn's frames end with its done
                elif fanout is not None:
                    async for data in self._elsewhere(fanout, tenant_id, session_id, at, batched):
                        yield data
                else:
                    # No turn runs, so every frame of the last one is stored (a turn ends only
                    # after its commit), also those stored after the replay above was read.
                    async for data in self._replay(tenant_id, session_id, at, batched):
                        yield data
                if bell is None or not await self._next_turn(tenant_id, session_id, bell, rows):
                    return
            finally:
                if bell is not None:
                    self._bell.forget(session_id, bell)
                if rows is not None and fanout is not None:
                    fanout.forget(session_id, rows)

    async def _next_turn(self, tenant_id: str, session_id: str, bell: asyncio.Future[None],
                         rows: asyncio.Future[None] | None) -> bool:
        """Wait for the session's next turn: True when it started (here, or rows came from
        elsewhere, or it is time for the fan-out's re-read), False once the session ended."""
        while True:
            current = await self._offload.read(self._store.get_session, tenant_id, session_id)
            if current is None or current.status == SessionStatus.ENDED.value:
                return False
            if rows is None:
                done, _ = await asyncio.wait({bell}, timeout=self._heartbeat_s)
                if done:
                    return True
            else:
                await asyncio.wait({bell, rows}, timeout=self._reread_s, return_when=asyncio.FIRST_COMPLETED)
                return True

    async def _elsewhere(self, fanout: StreamFanout, tenant_id: str, session_id: str,
                         at: _Position, batched: bool) -> AsyncIterator[bytes]:
        """A turn this daemon does not run: its frames from the store as they are committed,
        to its ``done``. Nothing when no turn runs (the last stored event is ``done``)."""
        while True:
            rows = fanout.next_rows(session_id)
            try:
                async for data in self._replay(tenant_id, session_id, at, batched):
                    yield data
                if at.event is None:  # nothing read yet: what was the subscriber's last event?
                    last = await self._offload.read(self._store.last_stream_event, tenant_id, session_id)
                    if last is None:
                        return
                    if last.seq > at.seq:
                        continue  # committed since the read above: read them
                    at.event = last.event
                if at.event == "done":
                    return
                await asyncio.wait({rows}, timeout=fanout.reread_s)
            finally:
                fanout.forget(session_id, rows)

    async def _replay(self, tenant_id: str, session_id: str, at: _Position, batched: bool) -> AsyncIterator[bytes]:
        """Every stored frame after ``at`` (which moves along): one by one, or (``batched``) a
        page per item."""
        while True:
            frames, joined, last_event = await self._page(tenant_id, session_id, at.seq)
            if frames and batched:
                yield joined
            else:
                for _, data in frames:
                    yield data
            if frames:
                at.seq, at.event = frames[-1][0], last_event
            if len(frames) < REPLAY_PAGE:
                return

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
        return frames, b"".join(data for _, data in frames), rows[-1].event if rows else None


async def turn_frames(turn: Turn, every_s: float, *, batched: bool = False) -> AsyncGenerator[bytes | Idle, None]:
    """A running turn's frames to its ``done``, for the request that sent its message, and
    :data:`IDLE` after each quiet ``every_s``. The response's own task waits on the turn (no
    reader task between them), so a committed frame is written one loop step later; it reads
    only when it asks for the next item (backpressure)."""
    async with contextlib.aclosing(turn.subscribe(batched=batched, quiet_s=every_s)) as items:
        async for item in items:
            yield item if isinstance(item, Idle) else item[1]


def with_heartbeats(source: AsyncGenerator[bytes, None], every_s: float) -> AsyncGenerator[bytes | Idle, None]:
    """Every item of ``source``, read only when asked for, and :data:`IDLE` after each quiet
    ``every_s``. Closing the result early closes ``source`` (its ``finally`` blocks run then,
    not at collection)."""
    return watched(source, every_s)
