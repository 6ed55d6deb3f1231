"""One running turn on the IOLoop: bridge events in, SSE frames and stored rows out.

A turn is independent of the HTTP request that started it: if the client disconnects,
the turn still runs to its end and everything is stored. Every frame gets the session's
next event id (``id:``), assigned here before it is sent (one turn at a time per session
makes that safe) and stored with group commit for replay.

Durability: the user message is committed before the model is called. A frame is
delivered only after the batch holding it is committed, so no client ever sees an event id
that a crash could lose or reuse. ``done`` is recorded and committed, then the session
actor releases the turn, and only then is ``done`` delivered — so a client that sees
``done`` can replay the whole turn and can send its next message at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ashd import __version__
from ashd.actors.messages import TurnGrant
from ashd.errors import Unavailable
from ashd.events import SSEEvent, compact_json, frame, stored_message, stream_events, timeline_events, user_message
from ashd.http.context import AppContext
from ashd.http.turnlog import TurnLog
from ashd.http.watchdog import Idle, watched
from ashd.options import MessageOptions
from ashd.wire import protocol
from ashd.wire.link import LOST, BridgeGone, BridgeLink

if TYPE_CHECKING:
    import pykka

    from ashd.actors.session import SessionActor

log = logging.getLogger(__name__)

Frame = tuple[int, bytes]
EXIT_WAIT_S = 0.5  # how long a dropped turn waits to learn why its agent process died
KILL_TIMEOUT_S = 60.0  # killing an agent process: SIGKILL, then the sandbox's teardown


class Turn:
    def __init__(
        self,
        ctx: AppContext,
        tenant_id: str,
        grant: TurnGrant,
        actor: pykka.ActorProxy[SessionActor],
        options: MessageOptions,
        first_seq: int,
        received_at: float | None = None,
    ) -> None:
        """``received_at``: when the message POST arrived (``time.monotonic()``), for the
        ``ashd_turn_overhead_seconds`` metric; default: now."""
        self._ctx = ctx
        self._received_at = time.monotonic() if received_at is None else received_at
        self._started_at = self._received_at
        self._tenant = tenant_id
        self._grant = grant
        self._actor = actor
        self._options = options
        self.first_seq = first_seq
        self._next_seq = first_seq
        self._frames: list[Frame] = []  # delivered
        self._committing: list[Frame] = []  # recorded, waiting for their batch to commit
        self._subscribers: list[asyncio.Queue[Frame | None]] = []
        self._log = TurnLog(ctx.offload, ctx.store, tenant_id, grant.session_id, self._committed)
        self.finished = False
        self.failure: str | None = None  # the first error of the turn, if it failed (the queue asks)
        self._killed: str | None = None  # why the turn's agent process was killed, if it was
        self._ended = asyncio.Event()

    @property
    def session_id(self) -> str:
        return self._grant.session_id

    async def subscribe(self, after: int = 0) -> AsyncIterator[Frame]:
        """Every delivered frame with an id above ``after``, then live ones, until the end."""
        queue: asyncio.Queue[Frame | None] = asyncio.Queue()
        for past in self._frames:
            if past[0] > after:
                queue.put_nowait(past)
        if self.finished:
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
        self._started_at = time.monotonic()
        self._publish(SSEEvent("session_start", {"sessionId": self.session_id, "version": __version__}))
        try:
            await self._run()
        except Exception as exc:  # boundary: report on the stream, keep the daemon up
            log.exception("turn of session %s failed", self.session_id)
            self._error(f"internal error during the turn: {type(exc).__name__}")
        done = self._record(SSEEvent("done", {"sessionId": self.session_id}))
        try:
            await self._log.flush()
        except Exception:
            log.exception("storing the turn of session %s failed", self.session_id)
            for item in self._committing:  # never hold frames back because storage failed
                self._deliver(item)
            self._committing = []
            self._deliver(self._record(SSEEvent("error", {"error": "the turn could not be stored completely"})))
            done = self._record(SSEEvent("done", {"sessionId": self.session_id}))  # ids stay increasing
        try:
            await self._ctx.offload.ask(self._actor.end_turn())
        except Unavailable as exc:  # its actor stopped (ashd shutting down) or did not answer
            log.warning("session %s did not acknowledge the end of its turn: %s", self.session_id, exc.message)
        except Exception:
            log.exception("session %s did not acknowledge the end of its turn", self.session_id)
        self._deliver(done)
        self._ctx.metrics.turn_duration.observe(time.monotonic() - self._started_at)
        self._close()

    def notice(self, payload: dict[str, Any]) -> None:
        """A sandbox fact during the turn (loop thread): an OOM kill inside the sandbox becomes
        an ``error`` event (the turn goes on), an egress decision an ``egress`` event."""
        if self.finished:
            return
        if payload.get("type") == "sandbox_oom":
            self._publish(SSEEvent("error", {"error": str(payload.get("message"))}))
        elif payload.get("type") == "egress":
            self._publish(SSEEvent("egress", {k: v for k, v in payload.items() if k != "type"}))

    async def interrupt(self) -> None:
        """Ask the agent to stop the current turn (the SDK's interrupt). Raises BridgeGone."""
        link = await self._ctx.links.get(self._grant)
        await link.interrupt()

    async def _run(self) -> None:
        await self._ctx.offload.write(
            self._ctx.store.append_message, self._tenant, self.session_id, "user", user_message(self._options.content)
        )
        try:
            link = await self._ctx.links.get(self._grant)
        except BridgeGone as exc:
            self._ctx.links.drop(self._grant.sandbox_id)
            self._error(f"the agent process is not reachable: {exc}")
            return
        if self._ctx.limit_turn is not None:  # this turn's budget binds at the model proxy too
            self._ctx.limit_turn(self._grant.sandbox_id, self._options.max_budget_usd)
        query = protocol.Query(self._options.content, self._options.include_partial_messages, self._options.model,
                               self._options.turn_settings())
        self._ctx.metrics.turn_overhead.observe(time.monotonic() - self._received_at)  # the query is written next
        idle_s = self._ctx.config.sandbox.turn_idle_timeout_s
        quiet = 0  # consecutive idle periods: 1 -> interrupt, 2 -> kill, 3 -> give up on the link
        async for event in watched(link.turn(query), idle_s):
            if isinstance(event, Idle):
                quiet += 1
                if not await self._stalled(link, quiet, idle_s):
                    break
                continue
            quiet = 0
            if isinstance(event, protocol.Done):
                for error in await link.settle():  # the conversation is stored before done
                    self._error(f"the conversation could not be stored completely: {error}")
            elif isinstance(event, protocol.Message):
                self._on_message(event.data)
            elif isinstance(event, protocol.Error) and event.error == LOST and self._killed:
                self._error(self._killed)
            elif isinstance(event, protocol.Error) and event.error == LOST:
                fact = await self._ctx.offload.read(self._ctx.tree.exits.wait, self._grant.pid, EXIT_WAIT_S)
                self._error(f"the agent process was killed: {fact.reason}" if fact and fact.reason else LOST)
            elif isinstance(event, protocol.Error):
                self._error(event.error)
        if self._ctx.limit_turn is not None and self._options.max_budget_usd is not None:
            self._ctx.limit_turn(self._grant.sandbox_id, None)  # the turn's budget ends with it
        if link.closed or quiet:
            self._ctx.links.drop(self._grant.sandbox_id)

    async def _stalled(self, link: BridgeLink, quiet: int, idle_s: float) -> bool:
        """The agent sent nothing for another ``idle_s``: interrupt it, then kill it. False
        when even the kill brought no end (the turn is given up)."""
        if quiet == 1:
            log.warning("session %s: no event from its agent for %.0fs; interrupting the turn", self.session_id, idle_s)
            self._error(f"the agent sent nothing for {idle_s:.0f}s; the turn was interrupted")
            with contextlib.suppress(ConnectionError, RuntimeError):
                await link.interrupt()
            return True
        if quiet == 2:
            await self._kill_agent(f"the turn made no progress for {idle_s:.0f}s and did not stop when interrupted; "
                                   "its agent process was killed (the next message starts a new one)")
            return True
        self._error(self._killed or f"the agent process did not answer for {idle_s * quiet:.0f}s")
        return False

    async def _kill_agent(self, why: str) -> None:
        """SIGKILL the session's agent process; the link then reports it gone (error + done)."""
        self._killed = self._killed or why
        try:
            await self._ctx.offload.ask(self._actor.kill_agent(why), timeout=KILL_TIMEOUT_S)
        except Exception:
            log.exception("session %s: killing the agent process of a wedged turn failed", self.session_id)

    async def abort(self, why: str) -> None:
        """End the turn now (a stop or delete during the turn): kill the agent, wait for done.

        Loop thread; never raises. The turn's stream ends with ``error`` (``why``) and ``done``.
        """
        if not self.finished:
            await self._kill_agent(why)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ended.wait(), KILL_TIMEOUT_S)

    def _on_message(self, raw: dict[str, Any]) -> None:
        if raw.get("type") == "result" and raw.get("is_error") and self.failure is None:
            self.failure = str(raw.get("result") or raw.get("subtype") or "the turn ended with an error")
        for sse in stream_events(raw):
            self._publish(sse)
        stored = stored_message(raw)
        if stored is not None:
            self._log.add_message(*stored)
        for kind, data in timeline_events(raw):
            self._log.add_event(kind, compact_json(data))

    def _error(self, message: str) -> None:
        self.failure = self.failure or message
        self._publish(SSEEvent("error", {"error": message}))
        self._log.add_event("error", compact_json({"error": message}))

    def _record(self, event: SSEEvent) -> Frame:
        seq = self._next_seq
        self._next_seq += 1
        data = event.json()
        self._log.add_stream(seq, event.name, data)
        return seq, frame(event.name, data, seq)

    def _deliver(self, item: Frame) -> None:
        if item[0] == self.first_seq + 1:  # the first frame after session_start
            self._ctx.metrics.first_event.observe(time.monotonic() - self._started_at)
        self._frames.append(item)
        for queue in self._subscribers:
            queue.put_nowait(item)

    def _publish(self, event: SSEEvent) -> None:
        """Record now; deliver when committed (see ``_committed``)."""
        self._committing.append(self._record(event))

    def _committed(self, upto: int) -> None:
        ready = [f for f in self._committing if f[0] <= upto]
        self._committing = self._committing[len(ready):]
        for item in ready:
            self._deliver(item)

    def _close(self) -> None:
        self.finished = True
        self._ended.set()
        for queue in self._subscribers:
            queue.put_nowait(None)
        self._subscribers.clear()


async def start_turn(ctx: AppContext, tenant_id: str, session_id: str, actor: pykka.ActorProxy[SessionActor],
                     options: MessageOptions, timeout: float, received_at: float | None = None) -> Turn:
    """Ask the session for the turn, number its first frame after the stored ones, and start
    it on the loop (loop thread). Raises what ``begin_turn`` raises (409 busy, 400 status)."""
    grant = await ctx.offload.ask(actor.begin_turn(), timeout=timeout)
    try:
        last = await ctx.offload.read(ctx.store.last_stream_event, tenant_id, session_id)
    except Exception:
        await ctx.offload.ask(actor.end_turn())
        raise
    turn = Turn(ctx, tenant_id, grant, actor, options, first_seq=(last.seq if last else 0) + 1,
                received_at=received_at)
    ctx.start_turn(turn)
    return turn
