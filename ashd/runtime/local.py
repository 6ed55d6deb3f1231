"""LocalRuntime: the session runtime over this process's actor tree and bridge sockets.

Loop thread only (except :meth:`LocalRuntime.live_figures` and the tree's start and stop,
which block and say so). Every ask of a session actor goes through :class:`Offload`; the
calls that can start a sandbox go through :func:`~ashd.runtime.pending.answered`, so a
``Pending`` reply is waited for and repeated. A turn grant that arrives after its caller
gave up is handed back at once (``end_turn``), so a slow start never leaves a session busy
for a turn nobody runs.

Coordinators on a shared Postgres (``ownership``, :mod:`ashd.runtime.ownership`): a call that
needs the session's sandbox first claims the session's lease, so one coordinator at a time
serves it; another coordinator's idle session is handed over (its sandbox adopted warm), a
busy one answers 409. Standalone and SQLite have no ownership: nothing changes there.

Turns of one tenant are bounded (``pool.max_turns_per_tenant``, :mod:`ashd.runtime.tenant_turns`):
``send`` waits for a slot of the tenant's own before it asks for a grant.

The runtime builds the :class:`ExitBoard` and :class:`LogBook` (it reads them; the actors
write them) and hands them to the tree. Each session used since start has one
:class:`LiveSession` here, dropped when the session ends or stops.

This module holds the calls (lifecycle, turns, streams, the sandbox, health); what they stand
on (the tree, the live sessions, the asks of actors, the leases) is
:class:`~ashd.runtime.local_base.LocalBase`, and how a turn reaches its session
:class:`~ashd.runtime.turn_host.LocalTurnHost`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncGenerator, Callable, Iterable
from typing import Any

from ashd.actors.children import ChildSpec
from ashd.actors.exits import ExitBoard
from ashd.actors.figures import live_figures, tree_answers
from ashd.actors.inject import inject
from ashd.actors.messages import PoolStats, SessionView, TurnGrant
from ashd.actors.supervisor import build_tree
from ashd.actors.tell import tell
from ashd.actors.turn_gate import TurnGate
from ashd.actors.vitals import Verdict
from ashd.config import Config
from ashd.errors import Conflict, Unavailable
from ashd.mailbox import Idle
from ashd.metrics import LiveFigures, Metrics
from ashd.options import MessageOptions, SessionOptions
from ashd.runtime.fanout import StreamFanout
from ashd.runtime.live import LiveSession
from ashd.runtime.local_base import LocalBase
from ashd.runtime.offload import Offload
from ashd.runtime.ownership import SessionOwnership
from ashd.runtime.pending import answered
from ashd.runtime.streams import turn_frames
from ashd.runtime.turn import Turn
from ashd.runtime.turn_host import Actor, LimitTurn, LocalTurnHost, end_gated, hand_back_grant
from ashd.sandbox.launcher import Launcher
from ashd.sandbox.logring import LogBook, LogLine
from ashd.store import AgentRow, SessionRow, Store
from ashd.wire.link import BridgeGone
from ashd.wire.protocol import ExecResult

log = logging.getLogger(__name__)

STATS_TIMEOUT_S = 5.0
DEAD_GRANT_RETRIES = 3  # a grant for an agent process already known dead is asked again this often
DEAD_GRANT_WAIT_S = 0.1  # ... after this long (its session actor is being told of the exit)


class LocalRuntime(LocalBase):
    @classmethod
    def build(cls, config: Config, store: Store, launcher: Launcher, offload: Offload, metrics: Metrics,
              limit_turn: LimitTurn | None = None, start_timeout_s: float | None = None,
              prewarm: Callable[[AgentRow], int] = lambda agent: 0,
              fanout: StreamFanout | None = None,
              ownership: SessionOwnership | None = None) -> tuple[LocalRuntime, list[ChildSpec]]:
        """The runtime over a new actor tree, and the tree's children (pool, session
        supervisor) for :meth:`supervise`; nothing is started yet. The runtime makes the
        ExitBoard and LogBook (it reads them; the actors write them)."""
        exits, logs = ExitBoard(), LogBook()
        tree, children = build_tree(config, store, launcher, metrics, prewarm, exits=exits, logs=logs)
        return cls(config, store, offload, tree, exits, logs, metrics, limit_turn, start_timeout_s, fanout,
                   ownership), children

    @classmethod
    def start(cls, config: Config, store: Store, launcher: Launcher, offload: Offload, metrics: Metrics,
              limit_turn: LimitTurn | None = None, start_timeout_s: float | None = None) -> LocalRuntime:
        """Build and supervise the actor tree alone (no HTTP child). Blocks until it is up."""
        runtime, children = cls.build(config, store, launcher, offload, metrics, limit_turn, start_timeout_s)
        runtime.supervise(children, lambda reason: log.critical("the supervision tree gave up: %s", reason))
        return runtime

    # -- lifecycle ---------------------------------------------------------

    async def create(self, tenant_id: str, agent: AgentRow, options: SessionOptions, *,
                     may_use_prewarmed: bool) -> SessionRow:
        if may_use_prewarmed:
            warm = await self._offload.ask(self._tree.sessions.claim(agent))
            if warm is not None:
                try:
                    row: SessionRow = await answered(
                        lambda left: self._offload.ask(warm.claim(agent), timeout=left), self._start_timeout)
                except Conflict as exc:  # its sandbox died after it said it was ready
                    log.warning("agent %s: a pre-warmed sandbox was lost before its claim (%s); starting one",
                                agent.name, exc.message)
                else:
                    self._hold_created(tenant_id, row.id, warm)
                    return row
        session_id, asked = str(uuid.uuid4()), list[Actor]()
        created: SessionRow = await self._starting(tenant_id, session_id, lambda actor: actor.create(agent, options),
                                                   asked=asked)
        self._hold_created(tenant_id, session_id, asked[0])
        return created

    async def pause(self, tenant_id: str, session_id: str) -> SessionView:
        return await self._claimed(tenant_id, session_id, lambda actor: actor.pause_viewed())

    async def resume(self, tenant_id: str, session_id: str) -> SessionView:
        return await self._claimed(tenant_id, session_id, lambda actor: actor.resume_viewed())

    async def stop(self, tenant_id: str, session_id: str) -> SessionRow:
        await self._claim(tenant_id, session_id)
        await self._end_turn(session_id, "the session was stopped during this turn")
        stopped: SessionRow = await self._starting(tenant_id, session_id, lambda actor: actor.stop_session())
        self._retire(session_id)
        await self._let_lease_go(session_id)
        return stopped

    async def end(self, tenant_id: str, session_id: str) -> SessionRow:
        return await self._end(tenant_id, session_id, "the session was deleted during this turn")

    async def end_agent_sessions(self, tenant_id: str, session_ids: Iterable[str]) -> None:
        for session_id in session_ids:
            await self._end(tenant_id, session_id, "the session's agent was deleted during this turn")

    async def fork(self, tenant_id: str, session_id: str) -> SessionRow:
        child_id = str(uuid.uuid4())
        return await self._starting(tenant_id, session_id, lambda actor: actor.fork(child_id))

    async def configure(self, tenant_id: str, session_id: str, patch: dict[str, Any]) -> SessionRow:
        return await self._claimed(tenant_id, session_id, lambda actor: actor.configure(patch))

    # -- turns -------------------------------------------------------------

    async def send(self, tenant_id: str, session_id: str, options: MessageOptions,
                   received_at: float | None = None) -> Turn:
        live = self._live(tenant_id, session_id)
        live.claims += 1
        fresh = False
        try:
            fresh = await self._claim(tenant_id, session_id)
            # A lease just taken makes the actor read its row afresh (a tell): this turn is
            # asked for, behind that tell, never taken by the row it had. (Belt and braces: a
            # session whose lease was not held here has no live sandbox here, so no offer.)
            turn, turn_over = await self._new_turn(live, options, received_at, may_take=not fresh)
            self._run(live, turn, turn_over)
        except BaseException:
            if fresh:
                await self._let_lease_go_if_idle(tenant_id, session_id)
            raise
        finally:
            live.claims -= 1
        return turn

    async def _new_turn(self, live: LiveSession, options: MessageOptions, received_at: float | None,
                        may_take: bool = True) -> tuple[Turn, Callable[[], None]]:
        """The session's turn grant (a sandbox started if needed), then a turn of its tenant's
        (fair turns: waits at the tenant's bound), and its next event sequence. The tenant's
        bound is taken once the agent process is up, so a first message waiting for a queued
        start holds none of the tenant's turns. ``may_take``: a turn its actor offers may be
        taken without an ask (see :meth:`_grant`)."""
        grant, owner, gate = await self._grant(live, may_take)
        host = LocalTurnHost(live, grant, owner, self._actor, self._offload, self._limit_turn, gate)
        try:
            turn_over = await self._tenant_turns.admit(live.tenant_id)
        except BaseException:
            host.release()
            raise
        try:
            sequence = await live.sequence()
        except BaseException:
            host.release()
            turn_over()
            raise
        return Turn(self._env, host, live.tenant_id, live.session_id, options, sequence, received_at), turn_over

    def subscribe(self, tenant_id: str, session_id: str, after: int = 0, *, follow: bool = False,
                  batched: bool = False) -> AsyncGenerator[bytes | Idle, None]:
        return self._streams.subscribe(tenant_id, session_id, after, follow=follow, batched=batched)

    def turn_stream(self, turn: Turn, *, batched: bool = False) -> AsyncGenerator[bytes | Idle, None]:
        return turn_frames(turn, self._config.pool.sse_heartbeat_s, batched=batched)

    async def interrupt(self, tenant_id: str, session_id: str) -> None:
        turn = self.live_turn(session_id)
        if turn is None:
            raise Conflict("No turn is running in this session")
        try:
            await turn.interrupt()
        except BridgeGone as exc:
            raise Conflict(f"The turn cannot be interrupted: {exc}") from None

    # -- the sandbox -------------------------------------------------------

    async def exec(self, tenant_id: str, session_id: str, command: str, timeout_ms: int) -> ExecResult:
        actor = await self._actor(tenant_id, session_id)
        grant = await self._offload.ask(actor.exec_target())
        try:
            link = await self._live(tenant_id, session_id).link.get(grant)
            return await link.exec(command, timeout_ms)
        except BridgeGone as exc:
            raise Conflict(f"The session's sandbox is not reachable: {exc}") from None

    def logs(self, session_id: str, after: int = -1) -> list[LogLine]:
        return self._logs.lines(session_id, after)

    def notice(self, session_id: str, payload: dict[str, Any]) -> None:
        if payload.get("type") == "sandbox_oom":
            self._logs.system(session_id, str(payload.get("message")))
        turn = self.live_turn(session_id)
        if turn is not None:
            turn.notice(payload)

    def prewarm(self, agent: AgentRow, count: int) -> None:
        tell(self._tree.sessions.prewarm, agent, count, context=f"pre-warming agent {agent.name}")

    def move_off(self, sandbox_ids: list[str], reason: str) -> None:
        """Move these sandboxes' sessions elsewhere at their next idle point (a drain: the
        pool tells the idle ones' session actors). Any thread; never blocks."""
        try:
            pool = self._tree.pool
        except Unavailable:  # the pool is restarting: the drain looks again soon
            return
        tell(pool.move_off, sandbox_ids, reason, context=f"moving sessions off ({reason})")

    # -- health ------------------------------------------------------------

    async def pool_stats(self) -> PoolStats:
        return await self._offload.ask(self._tree.pool.stats(), timeout=STATS_TIMEOUT_S)

    async def prewarm_hits(self) -> int:
        hits: int = await self._offload.ask(self._tree.sessions.prewarm_hits, timeout=STATS_TIMEOUT_S)
        return hits

    def start_verdict(self) -> Verdict:
        return self._tree.starts.verdict()

    def supervision(self) -> dict[str, Any]:
        return self._tree.supervision.to_json()

    def admission(self) -> dict[str, int]:
        return self._tree.gate.figures() if self._tree.gate is not None else {}

    async def inject_fault(self, target: str, session_id: str | None, tenant_id: str) -> None:
        await self._offload.read(inject, self._tree, target, session_id, tenant_id)

    async def answers(self, timeout_s: float) -> bool:
        return await self._offload.read(tree_answers, self._tree, timeout_s)

    def live_figures(self) -> LiveFigures:
        return live_figures(self._tree, self._store)

    async def drain(self, timeout_s: float) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)

    # -- internals ---------------------------------------------------------

    async def _grant(self, live: LiveSession, may_take: bool = True) -> tuple[TurnGrant, Actor, TurnGate | None]:
        """The session's turn grant, the actor that granted it, and the gate it was taken
        through, if it was. A warm, idle session's actor offers its next turn in its gate
        (ashd/actors/turn_gate.py): taken here, on the loop, without the ``begin_turn`` round
        trip, and the actor told (it holds the turn as begun from its next message on).
        Otherwise asked. One for an agent process already known to have exited (its session
        actor is being told) is handed back and asked again, so a message right after a crash
        starts a new agent process instead of failing on the dead one."""
        tenant_id, session_id = live.tenant_id, live.session_id
        asked: list[Actor] = []
        for attempt in range(DEAD_GRANT_RETRIES + 1):
            offered = self._tree.turn_gates.take(tenant_id, session_id) if may_take and attempt == 0 else None
            gate = offered.gate if offered is not None else None
            if offered is not None:
                grant, owner = offered.grant, offered.owner
                live.actor = owner
                tell(owner.turn_taken, context=f"session {session_id}: a turn taken through its gate")
            else:
                grant = await self._starting(tenant_id, session_id, lambda actor: actor.begin_turn(),
                                             hand_back_grant, asked, live)
                owner = asked[0]
            if attempt == DEAD_GRANT_RETRIES or live.exited(grant.pid) is None:
                return grant, owner, gate
            log.info("session %s: its agent process %d has exited; asking for a new one", session_id, grant.pid)
            if gate is not None:
                end_gated(gate, owner, session_id)
            else:
                await self._offload.ask(owner.end_turn())
            await asyncio.sleep(DEAD_GRANT_WAIT_S)
        raise AssertionError("unreachable")

    def _run(self, live: LiveSession, turn: Turn, turn_over: Callable[[], None]) -> None:
        """Run a turn as a task; it is the session's live turn until it ends (then ``turn_over()``)."""
        live.turn = turn
        turn.start()  # the query is written now, if the link is up (not a loop step later)
        task = asyncio.ensure_future(turn.run())
        self._tasks.add(task)
        self._bell.ring(live.session_id)

        def finished(_: asyncio.Future[None]) -> None:
            turn_over()
            self._tasks.discard(task)
            if live.turn is turn:
                live.turn = None
            if live.retiring:
                self._retire(live.session_id)

        task.add_done_callback(finished)

    async def _end_turn(self, session_id: str, why: str) -> None:
        """A stop or end always works: a running (maybe wedged) turn is ended first, its agent
        process killed (the turn's stream ends with ``error`` and ``done``)."""
        turn = self.live_turn(session_id)
        if turn is not None:
            await turn.abort(why)

    async def _end(self, tenant_id: str, session_id: str, why: str) -> SessionRow:
        await self._claim(tenant_id, session_id)
        await self._end_turn(session_id, why)
        ended: SessionRow = await self._starting(tenant_id, session_id, lambda actor: actor.end_session())
        tell(self._tree.sessions.forget, session_id, context=f"forgetting ended session {session_id}")
        self._retire(session_id)
        await self._let_lease_go(session_id)
        return ended
