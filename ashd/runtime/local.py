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
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from typing import Any, TypeVar

import pykka

from ashd.actors.children import ChildSpec
from ashd.actors.exits import ExitBoard
from ashd.actors.figures import live_figures, tree_answers
from ashd.actors.inject import inject
from ashd.actors.messages import Pending, PoolStats, SessionView, TurnGrant
from ashd.actors.root import RootSupervisor, TreePolicy, start_root
from ashd.actors.session import SessionActor
from ashd.actors.supervisor import Tree, build_tree
from ashd.actors.tell import tell
from ashd.actors.turn_gate import TurnGate
from ashd.actors.vitals import Verdict
from ashd.config import Config
from ashd.errors import Conflict, Unavailable
from ashd.metrics import LiveFigures, Metrics
from ashd.options import MessageOptions, SessionOptions
from ashd.runtime.fanout import StreamFanout
from ashd.runtime.following import SessionBell
from ashd.runtime.live import LiveSession
from ashd.runtime.offload import Offload
from ashd.runtime.ownership import TURN_RUNNING, SessionOwnership
from ashd.runtime.pending import answered
from ashd.runtime.streams import SessionStreams, turn_frames, with_heartbeats
from ashd.runtime.tenant_turns import TenantTurns
from ashd.runtime.turn import KILL_TIMEOUT_S, Turn, TurnEnv
from ashd.runtime.watchdog import Idle
from ashd.sandbox.launcher import Launcher
from ashd.sandbox.logring import LogBook, LogLine
from ashd.store import AgentRow, SessionRow, Store
from ashd.wire.link import BridgeGone, BridgeLink
from ashd.wire.protocol import ExecResult

log = logging.getLogger(__name__)

T = TypeVar("T")
Actor = pykka.ActorProxy[SessionActor]
LimitTurn = Callable[[str, float | None], None]  # (sandbox id, budget or None) at the model proxy

TREE_START_TIMEOUT_S = 120.0  # every child of the root started and answered its ping
TREE_STOP_TIMEOUT_S = 90.0
STATS_TIMEOUT_S = 5.0
DEAD_GRANT_RETRIES = 3  # a grant for an agent process already known dead is asked again this often
DEAD_GRANT_WAIT_S = 0.1  # ... after this long (its session actor is being told of the exit)
HAND_OVER_TIMEOUT_S = 90.0  # the last turn's snapshot, the release on the runner, the local cleanup


class LocalRuntime:
    def __init__(self, config: Config, store: Store, offload: Offload, tree: Tree, exits: ExitBoard,
                 logs: LogBook, metrics: Metrics, limit_turn: LimitTurn | None = None,
                 start_timeout_s: float | None = None, fanout: StreamFanout | None = None,
                 ownership: SessionOwnership | None = None) -> None:
        """``start_timeout_s``: how long a caller waits for a call that may start a sandbox
        (default: the bridge's ready timeout plus 30 s). ``fanout``: on a shared Postgres,
        streams of turns another daemon runs follow them through it (``streams.py``).
        ``ownership``: coordinators' session leases (None: this daemon owns every session)."""
        self._config = config
        self._store = store
        self._offload = offload
        self._tree = tree
        self._exits = exits
        self._logs = logs
        self._limit_turn = limit_turn
        self._start_timeout = (config.pool.bridge_ready_timeout_s + 30 if start_timeout_s is None
                               else start_timeout_s)
        self._env = TurnEnv(offload, store, metrics, config.sandbox.turn_idle_timeout_s)
        self._sessions: dict[str, LiveSession] = {}
        self._tenant_turns = TenantTurns(config.pool.max_turns_per_tenant)
        self._tasks: set[asyncio.Future[None]] = set()
        self._bell = SessionBell()  # rung when a turn starts here
        self._streams = SessionStreams(store, offload, self._bell, self.live_turn, config.pool.sse_heartbeat_s,
                                       fanout)
        self._root: pykka.ActorRef[RootSupervisor] | None = None
        self._ownership = ownership
        self._handing_over: set[str] = set()  # sessions being handed to another coordinator
        if ownership is not None:
            ownership.bind(self._hand_over, self._fence)

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

    def supervise(self, children: list[ChildSpec], on_give_up: Callable[[str], object]) -> None:
        """Start the root supervisor over ``children``, in order, each answering a ping before
        the next; ``on_give_up(reason)`` when it gives up. Blocking: call it off the loop."""
        self._root = start_root(children, self._tree.registry, self._tree.supervision,
                                TreePolicy.from_config(self._config.supervision), on_give_up, TREE_START_TIMEOUT_S)

    async def stop_tree(self) -> None:
        """Stop the actor tree in reverse (every bridge: TERM, grace, KILL), keeping the loop
        free meanwhile so running streams can deliver their final error/done."""
        root = self._root
        self._close_gate()
        if root is not None:
            await asyncio.get_running_loop().run_in_executor(None, lambda: root.stop(timeout=TREE_STOP_TIMEOUT_S))

    def shutdown(self) -> None:
        """Blocking: stop the tree if it still runs, and close every bridge link."""
        self._close_gate()
        if self._root is not None and self._root.is_alive():
            self._root.stop(timeout=TREE_STOP_TIMEOUT_S)
        for live in self._sessions.values():
            live.close()

    def _close_gate(self) -> None:
        """No queued start runs once the shutdown began: it would build files and start a
        sandbox the stopping pool might miss (issue #18: sandboxes left behind)."""
        if self._tree.gate is not None:
            self._tree.gate.close()
        self._tree.turn_gates.shut_all()  # and no turn is taken past the stopping actors

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
        host = _LocalTurnHost(live, grant, owner, self._actor, self._offload, self._limit_turn, gate)
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

    def live_turn(self, session_id: str) -> Turn | None:
        live = self._sessions.get(session_id)
        return live.turn if live is not None else None

    def holds(self, tenant_id: str, session_id: str) -> bool:
        return self._held(tenant_id, session_id) is not None

    def _held(self, tenant_id: str, session_id: str) -> LiveSession | None:
        # A LiveSession is made only after a caller's store check for its tenant, and is
        # dropped when the session ends or stops.
        live = self._sessions.get(session_id)
        return live if live is not None and live.tenant_id == tenant_id and not live.retiring else None

    def subscribe(self, tenant_id: str, session_id: str, after: int = 0, *, follow: bool = False,
                  batched: bool = False) -> AsyncGenerator[bytes | Idle, None]:
        return self._streams.subscribe(tenant_id, session_id, after, follow=follow, batched=batched)

    def turn_stream(self, turn: Turn, *, batched: bool = False) -> AsyncGenerator[bytes | Idle, None]:
        return with_heartbeats(turn_frames(turn, batched=batched), self._config.pool.sse_heartbeat_s)

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

    async def _actor(self, tenant_id: str, session_id: str, live: LiveSession | None = None) -> Actor:
        """The session's actor: asked of the supervisor (a stopped one comes back from the
        store), except on the turn path, where ``live`` keeps the last one while it lives."""
        if live is not None and live.actor is not None and live.actor.actor_ref.is_alive():
            return live.actor
        actor: Actor = await self._offload.ask(self._tree.sessions.child(session_id, tenant_id))
        if live is not None:
            live.actor = actor
        return actor

    async def _starting(self, tenant_id: str, session_id: str, call: Callable[[Actor], pykka.Future[T | Pending]],
                        hand_back: Callable[[Actor, T | Pending], None] | None = None,
                        asked: list[Actor] | None = None, live: LiveSession | None = None) -> T:
        """A call that may start a sandbox: Pending is waited for and the call repeated (on
        the session's current actor). ``hand_back`` gets a reply that came after we gave up;
        ``asked`` ends with the actor that gave the final answer. ``live`` (default: the one
        this runtime holds for the session, if any): use and keep the actor there (one that
        stopped in between is asked for again, once)."""
        live = live or self._held(tenant_id, session_id)
        async def ask_once(left: float) -> T | Pending:
            actor = await self._actor(tenant_id, session_id, live)
            if asked is not None:
                asked[:] = [actor]
            late = None if hand_back is None else (lambda reply: hand_back(actor, reply))
            try:
                return await self._offload.ask(call(actor), timeout=left, on_late=late)
            except (Unavailable, pykka.ActorDeadError):
                if live is None or live.actor is not actor or actor.actor_ref.is_alive():
                    raise
                live.actor = None  # it retired (idle) just now: its successor loads from the store
                raise _Retired() from None

        async def ask(left: float) -> T | Pending:
            try:
                return await ask_once(left)
            except _Retired:
                return await ask_once(left)

        return await answered(ask, self._start_timeout)

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
                                             _hand_back_grant, asked, live)
                owner = asked[0]
            if attempt == DEAD_GRANT_RETRIES or live.exited(grant.pid) is None:
                return grant, owner, gate
            log.info("session %s: its agent process %d has exited; asking for a new one", session_id, grant.pid)
            if gate is not None:
                _end_gated(gate, owner, session_id)
            else:
                await self._offload.ask(owner.end_turn())
            await asyncio.sleep(DEAD_GRANT_WAIT_S)
        raise AssertionError("unreachable")

    def _run(self, live: LiveSession, turn: Turn, turn_over: Callable[[], None]) -> None:
        """Run a turn as a task; it is the session's live turn until it ends (then ``turn_over()``)."""
        live.turn = turn
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

    def _live(self, tenant_id: str, session_id: str) -> LiveSession:
        live = self._sessions.get(session_id)
        if live is None:
            live = LiveSession(tenant_id, session_id, self._store, self._offload, self._exits)
            self._sessions[session_id] = live
        live.retiring = False  # used again before its last turn ended: it stays
        return live

    def _hold_created(self, tenant_id: str, session_id: str, actor: Actor) -> None:
        """A session just created here: its first message needs no ask for its actor and no
        read of its event ids (it has none yet)."""
        live = self._live(tenant_id, session_id)
        live.actor = actor
        live.created()

    def _retire(self, session_id: str) -> None:
        """The session ended or stopped: let its runtime state go (after its running turn)."""
        live = self._sessions.get(session_id)
        if live is None:
            return
        live.close()
        if live.turn is None:
            del self._sessions[session_id]
        else:
            live.retiring = True

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

    # -- ownership across coordinators (ashd/runtime/ownership.py) -------------

    async def _claim(self, tenant_id: str, session_id: str) -> bool:
        """Hold the session's lease before using its sandbox; True if it was just taken here,
        in which case what this daemon cached of the session (its row in the actor, its
        event ids) is read afresh. Raises Conflict (a turn runs on another coordinator, or
        the session is being handed to one), Unavailable."""
        if self._ownership is None:
            return False
        if session_id in self._handing_over:
            raise Conflict(TURN_RUNNING)  # another coordinator is taking it for a turn
        fresh = await self._ownership.claim(session_id)
        if fresh:
            live = self._sessions.get(session_id)
            if live is not None:
                live.forget_sequence()
            actor = await self._actor(tenant_id, session_id, live)
            tell(actor.forget_row, context=f"session {session_id}: reading its row afresh")
        return fresh

    async def _claimed(self, tenant_id: str, session_id: str, call: Callable[[Actor], pykka.Future[T | Pending]]) -> T:
        """``call`` under the session's lease; a lease taken for it is given up afterwards
        unless a sandbox is live here then (a resume keeps it, a pause of a session whose
        sandbox was elsewhere does not)."""
        fresh = await self._claim(tenant_id, session_id)
        try:
            answer: T = await self._starting(tenant_id, session_id, call)
            return answer
        finally:
            if fresh:
                await self._let_lease_go_if_idle(tenant_id, session_id)

    async def _let_lease_go(self, session_id: str) -> None:
        if self._ownership is not None:
            await self._ownership.release(session_id)

    async def _let_lease_go_if_idle(self, tenant_id: str, session_id: str) -> None:
        """After a call that took the lease and failed: give it up unless a sandbox (or its
        start) is live here."""
        try:
            actor = await self._offload.ask(self._tree.sessions.live_child(session_id))
            if actor is None or not await self._offload.ask(actor.holds_sandbox()):
                await self._let_lease_go(session_id)
        except Exception as exc:  # boundary: the caller's own outcome matters; a kept lease is handed over on request
            log.warning("session %s: lease not given up after the call: %s", session_id, exc)

    async def _hand_over(self, session_id: str) -> bool:
        """Another coordinator asks for the session (the owner's side): if nothing runs here,
        give its sandbox up alive (the asker adopts it) and the lease with it; False if busy."""
        live = self._sessions.get(session_id)
        if session_id in self._handing_over or (live is not None and (live.turn is not None or live.claims)):
            return False
        self._handing_over.add(session_id)
        try:
            actor = await self._offload.ask(self._tree.sessions.live_child(session_id))
            if actor is not None and not await self._offload.ask(actor.hand_over(), timeout=HAND_OVER_TIMEOUT_S):
                return False
            if live is not None:
                live.link.drop()
                live.forget_sequence()
            await self._let_lease_go(session_id)
            return True
        finally:
            self._handing_over.discard(session_id)

    async def _fence(self, session_id: str) -> None:
        """The lease on the session was lost with the lease connection: end its agent process
        here (a running turn ends with error + done); the next use claims it again."""
        actor = await self._offload.ask(self._tree.sessions.live_child(session_id))
        if actor is not None:
            await self._offload.ask(actor.kill_agent("this coordinator lost its lease on the session "
                                                     "(its lease connection to the database failed)"),
                                    timeout=KILL_TIMEOUT_S)
            tell(actor.forget_row, context=f"session {session_id}: reading its row afresh")
        live = self._sessions.get(session_id)
        if live is not None:
            live.link.drop()
            live.forget_sequence()


class _Retired(Exception):
    """The session's kept actor stopped before it answered: ask the supervisor again."""


def _hand_back_grant(actor: Actor, late: TurnGrant | Pending) -> None:
    """A turn granted after its caller gave up: nobody will run it, so release it at once."""
    if isinstance(late, TurnGrant):
        tell(actor.end_turn, context=f"session {late.session_id}: releasing a turn its caller gave up")


def _end_gated(gate: TurnGate, owner: Actor, session_id: str) -> None:
    """A turn taken through ``gate`` is over: the gate takes the next one at once; its actor
    is told (it does what ``end_turn`` does at its next message)."""
    gate.end()
    tell(owner.turn_ended, context=f"session {session_id}: releasing its turn")


class _LocalTurnHost:
    """How a turn reaches a local session: its actor (release, kill) and its bridge link."""

    def __init__(self, live: LiveSession, grant: TurnGrant, owner: Actor,
                 actor: Callable[[str, str], Awaitable[Actor]], offload: Offload, limit_turn: LimitTurn | None,
                 gate: TurnGate | None = None) -> None:
        self._live = live
        self._gate = gate  # the turn gate the turn was taken through, if it was
        self._grant = grant
        self._owner = owner  # the actor that granted the turn
        self._actor = actor
        self._offload = offload
        self._limit_turn = limit_turn

    async def connect(self) -> BridgeLink:
        return await self._live.link.get(self._grant)

    def drop_link(self) -> None:
        self._live.link.drop()

    async def exit_reason(self) -> str | None:
        return await self._live.exit_reason(self._grant.pid)

    def release(self) -> None:
        """A tell to the actor that granted the turn, queued before ``done`` is delivered: a
        client's next message asks the same actor's mailbox later, so it is never refused for
        this turn. An actor that stopped meanwhile holds no turn (its successor loads the
        session from the store, idle). A turn taken through the gate is released there first."""
        if self._gate is not None:
            _end_gated(self._gate, self._owner, self._grant.session_id)
            return
        tell(self._owner.end_turn, context=f"session {self._grant.session_id}: releasing its turn")

    async def kill(self, why: str) -> None:
        actor = await self._actor(self._grant.tenant_id, self._grant.session_id)
        await self._offload.ask(actor.kill_agent(why), timeout=KILL_TIMEOUT_S)

    def bind_budget(self, usd: float | None) -> None:
        if self._limit_turn is not None:
            self._limit_turn(self._grant.sandbox_id, usd)
