"""Group commit of one turn's rows (loop thread only).

While a write is in flight, new rows accumulate; when it completes, the next transaction
takes everything pending. Rows reach the database in order, with one transaction per batch
instead of one per SDK message. A batch starts on the next turn of the loop, not on the first
row added, so the rows of one callback (the user message and ``session_start``; one SDK
message's frames, messages and timeline rows) share it; or sooner, when the turn says it has
added all it has for now (:meth:`TurnLog.commit_now`). Batches start at most every
:data:`PACE_S`: an agent's events that come a fraction of a millisecond apart (a burst of text
deltas, a message's last stream events) share a commit and reach the client in one write,
instead of a commit and a write each, at most that much later. The turn's first text delta
(``commit_now(urgent=True)``) and its end (:meth:`TurnLog.flush`) do not wait. After each batch,
``on_commit`` is told the highest stream event id it contained, so the turn can deliver exactly
the frames that can no longer be lost.

On SQLite a batch is written at once, on the loop, when the writer thread is idle
(:meth:`Offload.write_at_once`): a small batch commits in ~80 µs, and the round trip to the
writer thread and back (0.5-1 ms on a busy two-core host) is saved. Otherwise (Postgres, or
the writer busy) it goes to the writer thread as before.

``hold()`` keeps rows back until ``flush()``: the end of a turn (its result's rows and
``done``) is one transaction. That last commit also takes the usage rows the model proxy
queued meanwhile (``Store.queue_usage``): usage is stored by the time ``done`` is delivered
(Ash stores it on the result), and no earlier commit, whose frames a client is waiting for,
carries it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable

from ashd.runtime.offload import Offload
from ashd.store import Store

log = logging.getLogger(__name__)

PACE_S = 0.005
"""The least time between the starts of two batches of a turn (except the urgent and the last)."""


class TurnLog:
    def __init__(self, offload: Offload, store: Store, tenant_id: str, session_id: str,
                 on_commit: Callable[[int], None]) -> None:
        self._on_commit = on_commit
        self._offload = offload
        self._store = store
        self._tenant = tenant_id
        self._session = session_id
        self._messages: list[tuple[str, str]] = []
        self._events: list[tuple[str, str]] = []
        self._stream: list[tuple[int, str, str]] = []
        self._inflight: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._scheduled: asyncio.Handle | None = None  # a batch start queued on the loop (maybe paced)
        self._held = False
        self._ending = False  # flush() began: the turn's last commits, which take the queued usage
        self._started = float("-inf")  # loop time the last batch started

    def add_message(self, role: str, content: str) -> None:
        self._messages.append((role, content))
        self._soon()

    def add_event(self, kind: str, data: str) -> None:
        self._events.append((kind, data))
        self._soon()

    def add_stream(self, seq: int, event: str, data: str) -> None:
        self._stream.append((seq, event, data))
        self._soon()

    def hold(self) -> None:
        """Keep every row from now on for ``flush()`` (one transaction for the turn's end)."""
        self._held = True

    def commit_now(self, urgent: bool = False) -> None:
        """Start the batch of the rows added so far now rather than at the loop's next step:
        the caller has added all it has for the moment (a turn whose agent sent nothing more
        yet), and its frames are delivered the sooner. Within :data:`PACE_S` of the last batch's
        start it starts when that has passed, unless ``urgent``."""
        if self._scheduled is not None and (urgent or self._paced() <= 0):
            self._kick()

    async def flush(self) -> None:
        """Wait until every row added so far is committed. Raises the first write error."""
        self._held = False
        self._ending = True
        while self._inflight is not None or self._pending:
            self._kick()
            if self._inflight is not None:
                await asyncio.wait({self._inflight})
        if self._error is not None:
            raise self._error

    @property
    def _pending(self) -> bool:
        return bool(self._messages or self._events or self._stream)

    def _paced(self) -> float:
        """How long until the next batch may start (0 or less: now)."""
        return self._started + PACE_S - asyncio.get_running_loop().time()

    def _soon(self) -> None:
        if self._scheduled is None and not self._held:
            loop, wait = asyncio.get_running_loop(), self._paced()
            self._scheduled = loop.call_later(wait, self._kick) if wait > 0 else loop.call_soon(self._kick)

    def _kick(self) -> None:
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        if self._inflight is not None or not self._pending or self._held:
            return
        self._started = asyncio.get_running_loop().time()
        batch = (self._messages, self._events, self._stream)
        self._messages, self._events, self._stream = [], [], []
        top = batch[2][-1][0] if batch[2] else None
        usage = self._ending
        try:
            if self._offload.write_at_once(
                    lambda: self._store.append_log_at_once(self._tenant, self._session, *batch, usage=usage)):
                self._written(None, top)
                return
        except Exception as exc:
            self._written(exc, top)
            return
        future = asyncio.ensure_future(self._offload.write(
            functools.partial(self._store.append_log, self._tenant, self._session, *batch, usage=usage)))
        self._inflight = future
        future.add_done_callback(lambda f: self._written(None if f.cancelled() else f.exception(), top))

    def _written(self, error: BaseException | None, top: int | None) -> None:
        self._inflight = None
        if error is not None and self._error is None:
            self._error = error
            log.error("storing rows of session %s failed: %s", self._session, self._error)
        if top is not None:
            # Also after a failure: the stream must go on; flush() reports the failure.
            self._on_commit(top)
        if self._ending:
            self._kick()
        elif self._pending:
            self._soon()
