"""Group commit of one turn's rows (loop thread only).

While a write is in flight, new rows accumulate; when it completes, the next transaction
takes everything pending. Rows reach the database as fast as it can take them, in order,
with one transaction per batch instead of one per SDK message.
"""

from __future__ import annotations

import asyncio
import logging

from ashd.http.aio import Offload
from ashd.store import Store

log = logging.getLogger(__name__)


class TurnLog:
    def __init__(self, offload: Offload, store: Store, tenant_id: str, session_id: str) -> None:
        self._offload = offload
        self._store = store
        self._tenant = tenant_id
        self._session = session_id
        self._messages: list[tuple[str, str]] = []
        self._events: list[tuple[str, str]] = []
        self._inflight: asyncio.Future[None] | None = None
        self._error: BaseException | None = None

    def add_message(self, role: str, content: str) -> None:
        self._messages.append((role, content))
        self._kick()

    def add_event(self, kind: str, data: str) -> None:
        self._events.append((kind, data))
        self._kick()

    async def flush(self) -> None:
        """Wait until every row added so far is committed. Raises the first write error."""
        while self._inflight is not None or self._messages or self._events:
            self._kick()
            if self._inflight is not None:
                await asyncio.wait({self._inflight})
        if self._error is not None:
            raise self._error

    def _kick(self) -> None:
        if self._inflight is not None or not (self._messages or self._events):
            return
        messages, events = self._messages, self._events
        self._messages, self._events = [], []
        future = asyncio.ensure_future(
            self._offload.write(self._store.append_log, self._tenant, self._session, messages, events)
        )
        self._inflight = future
        future.add_done_callback(self._written)

    def _written(self, future: asyncio.Future[None]) -> None:
        self._inflight = None
        if not future.cancelled() and future.exception() is not None and self._error is None:
            self._error = future.exception()
            log.error("storing rows of session %s failed: %s", self._session, self._error)
        self._kick()
