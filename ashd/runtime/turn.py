"""One running turn on the IOLoop: bridge events in, SSE frames and stored rows out.

A turn is independent of the HTTP request that started it: if the client disconnects,
the turn still runs to its end and everything is stored. Every frame gets the session's
next event id (``id:``) from the session's :class:`EventSequence` before it is sent (one
turn at a time per session makes that safe) and is stored with group commit for replay.

Durability: the user message is the first row of the turn's log, so it is committed before
any frame of the turn is delivered and before ``done`` (the query goes to the agent while it
commits: the single writer keeps the order). A frame is delivered only after the batch
holding it is committed, so no client ever sees an event id that a crash could lose or
reuse. ``done`` is recorded and committed, then the turn is released (the session may take
its next message), and only then is ``done`` delivered — so a client that sees ``done`` can
replay the whole turn and can send its next message at once. The release is a message to
the session's owner sent before ``done`` is delivered, so it is ahead of any next message
(a turn taken through the session's turn gate, ashd/actors/turn_gate.py, is also released in
the gate itself, so the next message takes its turn there at once).

The message path is kept short: the runtime calls :meth:`Turn.start` in the request's own step
of the loop, which writes the query when the agent's link is up; a bridge event reaches the
turn, and a committed frame its SSE response, through a :class:`~ashd.mailbox.Mailbox` (one
step each, no reader task between); a batch commits as soon as the turn has handled every
event already read, and the turn's first text delta at once, before the events read with it.

A turn reaches its agent through a :class:`TurnHost` (the runtime implementation that
granted it: the local one talks to a session actor and a bridge socket), so the turn itself
knows nothing of actors, sockets or pids.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, Protocol, overload

from ashd import __version__
from ashd.events import SSEEvent, compact_json, frame, stored_message, stream_events, timeline_events, user_message
from ashd.mailbox import IDLE, Idle, Mailbox
from ashd.metrics import Metrics
from ashd.options import MessageOptions
from ashd.runtime.offload import Offload
from ashd.runtime.sequence import EventSequence
from ashd.runtime.turnlog import TurnLog
from ashd.store import Store
from ashd.wire import protocol
from ashd.wire.link import LOST, BridgeGone, BridgeLink

log = logging.getLogger(__name__)

Frame = tuple[int, bytes]
KILL_TIMEOUT_S = 60.0  # killing an agent process: SIGKILL, then the sandbox's teardown


class TurnHost(Protocol):
    """What a turn needs from the runtime that granted it (loop thread)."""

    async def connect(self) -> BridgeLink:
        """The link to the agent. Raises BridgeGone."""

    def ready_link(self) -> BridgeLink | None:
        """The link to the agent if it is up now (no wait), else None (then :meth:`connect`)."""

    def drop_link(self) -> None:
        """The link is dead or wedged: the next connect makes a new one."""

    async def exit_reason(self) -> str | None:
        """Why the agent process died (waits briefly for the fact), or None if unknown."""

    def release(self) -> None:
        """The turn is over: the session may take its next message. Never blocks: the
        release is queued to the session's owner ahead of anything a later caller sends it."""

    async def kill(self, why: str) -> None:
        """Kill the agent process now (SIGKILL); its link then reports it gone."""

    def bind_budget(self, usd: float | None) -> None:
        """This turn's own budget at the model proxy (None: the turn's budget ends)."""


@dataclass(frozen=True)
class TurnEnv:
    """What every turn of this daemon shares."""

    offload: Offload
    store: Store
    metrics: Metrics
    idle_s: float  # the turn watchdog's period (sandbox.turn_idle_timeout_s)


class Turn:
    def __init__(self, env: TurnEnv, host: TurnHost, tenant_id: str, session_id: str, options: MessageOptions,
                 sequence: EventSequence, received_at: float | None = None) -> None:
        """``received_at``: when the message POST arrived (``time.monotonic()``), for the
        ``ashd_turn_overhead_seconds`` metric; default: now."""
        self._env = env
        self._host = host
        self._received_at = time.monotonic() if received_at is None else received_at
        self._started_at = self._received_at
        self._tenant = tenant_id
        self.session_id = session_id
        self._options = options
        self._sequence = sequence
        self.first_seq = sequence.last + 1
        self._frames: list[Frame] = []  # delivered
        self._committing: list[Frame] = []  # recorded, waiting for their batch to commit
        self._subscribers: list[Mailbox[Frame | None]] = []
        self._log = TurnLog(env.offload, env.store, tenant_id, session_id, self._committed)
        self.finished = False
        self.failure: str | None = None  # the first error of the turn, if it failed (the queue asks)
        self._killed: str | None = None  # why the turn's agent process was killed, if it was
        self._ended = asyncio.Event()
        self._begun = False
        # The turn's first text delta: None until published, True until committed, then False.
        # It is committed as soon as it is handled (the time to the first token is what a
        # client feels), not with the rest of the events read with it.
        self._first_text: bool | None = None
        self._asked: tuple[BridgeLink, str | None] | None = None  # the link and ask() result, if start() asked

    @overload
    def subscribe(self, after: int = 0, *, batched: bool = False,
                  quiet_s: None = None) -> AsyncGenerator[Frame, None]: ...

    @overload
    def subscribe(self, after: int = 0, *, batched: bool = False,
                  quiet_s: float) -> AsyncGenerator[Frame | Idle, None]: ...

    async def subscribe(self, after: int = 0, *, batched: bool = False,
                        quiet_s: float | None = None) -> AsyncGenerator[Frame | Idle, None]:
        """Every delivered frame with an id above ``after``, then live ones, until the end.
        ``batched``: each item joins every frame waiting at that moment (its id is the last's),
        so a subscriber that fell behind catches up in one write. ``quiet_s``: :data:`IDLE`
        after each quiet period that long (the caller's task waits itself: a delivered frame
        reaches it in one step of the loop)."""
        box: Mailbox[Frame | None] = Mailbox()
        for past in self._frames:
            if past[0] > after:
                box.put(past)
        if self.finished:
            box.put(None)
        else:
            self._subscribers.append(box)
        try:
            while True:
                if not await box.wait(quiet_s):
                    yield IDLE
                    continue
                item = box.take()
                if item is None:
                    return
                if not batched or not box:
                    yield item
                    continue
                waiting = [item]
                while box and (more := box.take()) is not None:
                    waiting.append(more)
                yield waiting[-1][0], b"".join(data for _, data in waiting)
                if more is None:
                    return
        finally:
            if box in self._subscribers:
                self._subscribers.remove(box)

    async def ended(self) -> None:
        """Wait until the turn has ended (its ``done`` delivered)."""
        await self._ended.wait()

    def start(self) -> None:
        """The turn's first step, in its caller's step of the loop (the runtime's ``send``):
        the user message and ``session_start`` are recorded, and when the agent's link is up
        the query is written at once, so the agent starts on it while the request's response
        is set up and the first rows commit. Never raises; :meth:`run` does the rest (and
        this first, if nobody did)."""
        if self._begun:
            return
        self._begun = True
        self._started_at = time.monotonic()
        self._log.add_message("user", user_message(self._options.content))  # first: committed before any frame
        self._publish(SSEEvent("session_start", {"sessionId": self.session_id, "version": __version__}))
        try:
            link = self._host.ready_link()
            if link is not None:
                self._asked = link, self._ask(link)
            self._log.commit_now()
        except Exception:  # boundary: run() connects and asks the usual way, and reports what fails
            log.exception("session %s: the turn's start failed", self.session_id)

    async def run(self) -> None:
        """Drive the turn to its end. Never raises; always ends with ``done``."""
        self.start()
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
        self._deliver(done)
        # Released one step of the loop later: the SSE responses write done first, and the
        # release still comes before the loop reads any other request, so a client that sends
        # its next message on seeing done finds the turn released (and ended() resolves after
        # it). Released first, the woken actor thread took the GIL at the loop's next system
        # call and done's write waited for it (0.69 → 0.25 ms from the last commit, median).
        try:
            await asyncio.sleep(0)
        finally:
            self._end()

    def _end(self) -> None:
        try:
            self._host.release()
        except Exception:  # boundary: the turn must still end
            log.exception("session %s: releasing its turn failed", self.session_id)
        self._env.metrics.turn_duration.observe(time.monotonic() - self._started_at)
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
        link = await self._host.connect()
        await link.interrupt()

    async def _run(self) -> None:
        if self._asked is not None:
            link, unsent = self._asked
        else:
            try:
                link = await self._host.connect()
            except BridgeGone as exc:
                self._host.drop_link()
                self._error(f"the agent process is not reachable: {exc}")
                return
            unsent = self._ask(link)
        idle_s = self._env.idle_s
        quiet = 0  # consecutive idle periods: 1 -> interrupt, 2 -> kill, 3 -> give up on the link
        async for event in link.answer(unsent, idle_s):
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
                reason = await self._host.exit_reason()
                self._error(f"the agent process was killed: {reason}" if reason else LOST)
            elif isinstance(event, protocol.Error):
                self._error(event.error)
            await self._handled(link)
        if self._options.max_budget_usd is not None:
            self._host.bind_budget(None)  # the turn's budget ends with it
        if link.closed or quiet:
            self._host.drop_link()

    async def _handled(self, link: BridgeLink) -> None:
        """An event was handled: its rows commit now if no other event was read yet; the
        turn's first text delta commits at once, and the response writes it before the
        events read with it are handled."""
        if self._first_text is True:
            self._first_text = False
            self._log.commit_now(urgent=True)
            if link.waiting:
                await asyncio.sleep(0)
        elif not link.waiting:
            self._log.commit_now()

    def _ask(self, link: BridgeLink) -> str | None:
        """Bind the turn's budget and write its query (:meth:`BridgeLink.ask`)."""
        self._host.bind_budget(self._options.max_budget_usd)  # this turn's budget binds at the model proxy too
        query = protocol.Query(self._options.content, self._options.include_partial_messages, self._options.model,
                               self._options.turn_settings())
        self._env.metrics.turn_overhead.observe(time.monotonic() - self._received_at)  # the query is written next
        return link.ask(query)

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
            await self._host.kill(why)
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
        if raw.get("type") == "result":
            self._log.hold()  # the result's rows commit with done, in one transaction
            if raw.get("is_error") and self.failure is None:
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
        seq = self._sequence.take()
        data = event.json()
        self._log.add_stream(seq, event.name, data)
        return seq, frame(event.name, data, seq)

    def _deliver(self, item: Frame) -> None:
        if item[0] == self.first_seq + 1:  # the first frame after session_start
            self._env.metrics.first_event.observe(time.monotonic() - self._started_at)
        self._frames.append(item)
        for box in self._subscribers:
            box.put(item)

    def _publish(self, event: SSEEvent) -> None:
        """Record now; deliver when committed (see ``_committed``)."""
        self._committing.append(self._record(event))
        if event.name == "text_delta" and self._first_text is None:
            self._first_text = True

    def _committed(self, upto: int) -> None:
        ready = [f for f in self._committing if f[0] <= upto]
        self._committing = self._committing[len(ready):]
        for item in ready:
            self._deliver(item)

    def _close(self) -> None:
        self.finished = True
        self._ended.set()
        for box in self._subscribers:
            box.put(None)
        self._subscribers.clear()

