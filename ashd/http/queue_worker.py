"""The prompt queue's worker: queued prompts become real turns (loop thread only).

``workers`` asyncio tasks, owned by the daemon, each claim the next due item (highest
priority, oldest; atomic across daemons sharing a database) and run its prompt as a turn
with the same machinery as ``POST /messages`` (``SessionRuntime.send``): stored,
and streamable at ``/api/sessions/:id/stream`` while it runs. The prompt goes into the
item's session (resumed if paused) or a new session of its agent, which later retries
reuse. A turn that reports an error, a sandbox that cannot start, capacity: the item is
retried after ``retry_delay_s * 2**retry`` (capped) until ``maxRetries``, then ``failed``.

One more task removes items that finished (completed, failed, cancelled) more than
``keep_finished_s`` ago, in batches on the single writer, every quarter of that (1 s .. 1 h);
every daemon on a shared database does, which is harmless (a delete of what is gone is a no-op).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta

from ashd.errors import AshError
from ashd.http.context import AppContext
from ashd.http.health import COORDINATOR_ID
from ashd.options import MessageOptions, SessionOptions
from ashd.states import SessionStatus
from ashd.store import format_utc, queue_queries
from ashd.store.queue_queries import QueueItemRow

log = logging.getLogger(__name__)

PRUNE_BATCH = 500  # finished items deleted per write transaction


class PermanentFailure(Exception):
    """A failure that a retry cannot fix (the session or agent is gone): failed at once."""


def retry_delay(retry: int, base_s: float, cap_s: float) -> float:
    """Pure: seconds before retry number ``retry`` (0-based): base * 2**retry, capped."""
    return min(cap_s, base_s * (2 ** min(retry, 32)))


def prune_every(keep_s: float) -> float:
    """Pure: seconds between looks for finished items kept ``keep_s``: a quarter of it, 1 s .. 1 h."""
    return min(3600.0, max(1.0, keep_s / 4))


class QueueWorker:
    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx
        self._config = ctx.config.queue
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start the worker tasks on the running loop (none if ``queue.workers`` is 0)."""
        for n in range(self._config.workers):
            self._tasks.append(asyncio.ensure_future(self._loop(n)))
        if self._tasks:
            log.info("prompt queue: %d worker(s), retries after %.1fs doubling", len(self._tasks),
                     self._config.retry_delay_s)
        if self._config.keep_finished_s > 0:
            self._tasks.append(asyncio.ensure_future(self._prune_loop(self._config.keep_finished_s)))

    async def stop(self) -> None:
        """Cancel the workers. An item cut off here stays ``processing`` and is requeued at
        the next start (like a crash)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _loop(self, n: int) -> None:
        store, offload = self._ctx.store, self._ctx.offload
        while True:
            try:
                # Checked by a read first: an idle worker must not take the single writer
                # (and SQLite's write lock) away from turns every poll.
                due = await offload.read(store.queue_item_due)
                item = await offload.write(store.claim_queue_item, COORDINATOR_ID) if due else None
            except Exception:  # boundary: the database may be briefly away; keep the worker
                log.exception("prompt queue worker %d: claiming an item failed", n)
                item = None
            if item is None:
                await self._idle()
                continue
            await self._process(item)

    async def _prune_loop(self, keep_s: float) -> None:
        while True:
            try:
                await self.prune(keep_s)
            except Exception:  # boundary: the database may be briefly away; try again next time
                log.exception("prompt queue: removing finished items failed")
            await asyncio.sleep(prune_every(keep_s))

    async def prune(self, keep_s: float) -> int:
        """Remove the items that finished more than ``keep_s`` ago; how many were removed."""
        store, offload = self._ctx.store, self._ctx.offload
        before = format_utc(datetime.now(UTC) - timedelta(seconds=keep_s))
        removed, batch = 0, PRUNE_BATCH
        while batch == PRUNE_BATCH:
            batch = await offload.write(store.write_with, queue_queries.prune_finished, before, PRUNE_BATCH)
            removed += batch
        if removed:
            log.info("prompt queue: removed %d item(s) that finished over %.0fs ago (queue.keep_finished_s)",
                     removed, keep_s)
        return removed

    async def _idle(self) -> None:
        wakeup = self._ctx.queue_wakeup
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wakeup.wait(), self._config.poll_interval_s)
        wakeup.clear()

    async def _process(self, item: QueueItemRow) -> None:
        session_id, permanent = item.session_id, False
        try:
            session_id = await self._session_for(item)
            failure = await self._run_turn(item.tenant_id, session_id, item.prompt)
        except PermanentFailure as exc:
            failure, permanent = str(exc), True
        except AshError as exc:  # capacity, a sandbox that would not start, a busy session, ...
            failure = exc.message
        except Exception as exc:  # boundary: one bad item must not stop the queue
            log.exception("queue item %s failed unexpectedly", item.id)
            failure = f"internal error: {type(exc).__name__}"
        await self._settle(item, session_id, failure, permanent)

    async def _settle(self, item: QueueItemRow, session_id: str | None, failure: str | None,
                      permanent: bool = False) -> None:
        store, offload = self._ctx.store, self._ctx.offload
        if failure is None:
            await offload.write(lambda: store.finish_queue_item(item.id, "completed", session_id=session_id,
                                                                claimed_by=COORDINATOR_ID))
            log.info("queue item %s completed in session %s", item.id, session_id)
        elif item.retry_count < item.max_retries and not permanent:
            delay = retry_delay(item.retry_count, self._config.retry_delay_s, self._config.retry_delay_cap_s)
            due = format_utc(datetime.now(UTC) + timedelta(seconds=delay))
            await offload.write(store.retry_queue_item, item.id, item.retry_count + 1, due, failure, session_id,
                                COORDINATOR_ID)
            log.warning("queue item %s failed (%s); retrying in %.1fs (retry %d/%d)", item.id, failure, delay,
                        item.retry_count + 1, item.max_retries)
            loop = asyncio.get_running_loop()
            loop.call_later(delay, self._ctx.queue_wakeup.set)
        else:
            await offload.write(lambda: store.finish_queue_item(item.id, "failed", error=failure,
                                                                session_id=session_id, claimed_by=COORDINATOR_ID))
            log.warning("queue item %s failed after %d retries: %s", item.id, item.retry_count, failure)

    async def _session_for(self, item: QueueItemRow) -> str:
        """The item's session, active (resumed if needed), or a new one of its agent."""
        ctx, tenant = self._ctx, item.tenant_id
        if item.session_id is not None:
            row = await ctx.offload.read(ctx.store.get_session, tenant, item.session_id)
            if row is None:
                raise PermanentFailure(f"Session {item.session_id} no longer exists")
            if row.agent_name != item.agent_name:
                raise PermanentFailure(f"Session {row.id} belongs to agent {row.agent_name}, not {item.agent_name}")
            if row.status == SessionStatus.ENDED.value:
                raise PermanentFailure(f"Session {row.id} has ended")
            if row.status != SessionStatus.ACTIVE.value:
                await ctx.runtime.resume(tenant, row.id)
            return row.id
        agent = await ctx.offload.read(ctx.store.get_agent, tenant, item.agent_name)
        if agent is None:
            raise PermanentFailure(f"Agent {item.agent_name} not found")
        session = await ctx.runtime.create(tenant, agent, SessionOptions(), may_use_prewarmed=False)
        await ctx.offload.write(ctx.store.set_queue_item_session, item.id, session.id)
        log.info("queue item %s runs in new session %s of agent %s", item.id, session.id, agent.name)
        return session.id

    async def _run_turn(self, tenant: str, session_id: str, prompt: str) -> str | None:
        """Run one turn to its ``done``; the first error it reported, or None."""
        options = MessageOptions.from_request({"content": prompt})
        turn = await self._ctx.runtime.send(tenant, session_id, options)
        await turn.ended()
        return turn.failure
