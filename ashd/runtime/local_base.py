"""LocalBase: what :class:`~ashd.runtime.local.LocalRuntime` stands on: the actor tree it
supervises, the :class:`LiveSession` it holds for each session used since start, the asks of
a session's actor (repeated over ``Pending``, :func:`~ashd.runtime.pending.answered`) and,
between coordinators on a shared Postgres, the session's lease (:mod:`ashd.runtime.ownership`):
claimed before a call that needs the sandbox, handed over when another coordinator asks for
an idle session, fenced when the lease connection is lost. Loop thread only, except the
tree's start and stop, which block and say so.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TypeVar

import pykka

from ashd.actors.children import ChildSpec
from ashd.actors.exits import ExitBoard
from ashd.actors.messages import Pending
from ashd.actors.root import RootSupervisor, TreePolicy, start_root
from ashd.actors.supervisor import Tree
from ashd.actors.tell import tell
from ashd.config import Config
from ashd.errors import Conflict, Unavailable
from ashd.metrics import Metrics
from ashd.runtime.fanout import StreamFanout
from ashd.runtime.following import SessionBell
from ashd.runtime.live import LiveSession
from ashd.runtime.offload import Offload
from ashd.runtime.ownership import TURN_RUNNING, SessionOwnership
from ashd.runtime.pending import answered
from ashd.runtime.streams import SessionStreams
from ashd.runtime.tenant_turns import TenantTurns
from ashd.runtime.turn import KILL_TIMEOUT_S, Turn, TurnEnv
from ashd.runtime.turn_host import Actor, LimitTurn
from ashd.sandbox.logring import LogBook
from ashd.store import Store

log = logging.getLogger(__name__)

T = TypeVar("T")

TREE_START_TIMEOUT_S = 120.0  # every child of the root started and answered its ping
TREE_STOP_TIMEOUT_S = 90.0
HAND_OVER_TIMEOUT_S = 90.0  # the last turn's snapshot, the release on the runner, the local cleanup


class LocalBase:
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

    # -- live sessions and their actors ----------------------------------------

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
