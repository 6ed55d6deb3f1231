"""The actor tree: RootSupervisor -> PoolActor, SessionSupervisor -> SessionActor*.

:func:`build_tree` makes the children the root starts in order (pool, then the session
supervisor) and the :class:`Tree` callers use: its ``pool`` and ``sessions`` always name the
CURRENT actor (through the registry the root updates on a restart), never a cached ref.
The session supervisor keys children by session id: a crashed child is replaced by a new
actor that rehydrates from the store on the next request.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from types import TracebackType

import pykka

from ashd.actors.answers import answered_future
from ashd.actors.children import (
    ChildRegistry,
    ChildSpec,
    Crashed,
    SupervisionRecord,
    actor_ping,
    actor_stop,
    proxy_once,
)
from ashd.actors.exits import ExitBoard
from ashd.actors.faults import FaultTarget, crash_detail
from ashd.actors.pool import PoolActor
from ashd.actors.restarts import RestartGovernor
from ashd.actors.root import TreePolicy
from ashd.actors.session import SessionActor
from ashd.actors.session_deps import SessionDeps
from ashd.actors.snapshot_worker import SnapshotWorker
from ashd.actors.start_gate import StartGate
from ashd.actors.tell import tell
from ashd.actors.timers import Timers
from ashd.actors.turn_gate import TurnGates
from ashd.actors.vitals import StartRecord
from ashd.config import Config, start_slots
from ashd.layout import Layout
from ashd.metrics import Metrics
from ashd.policy import Escalate, GiveUp, Restart
from ashd.sandbox.admission import DiskLedger, store_floor
from ashd.sandbox.launcher import Launcher
from ashd.sandbox.logring import LogBook
from ashd.snapshot.fingerprint import workspace_digest
from ashd.snapshot.snapshots import Snapshotter
from ashd.snapshot.store import blob_store_from_url
from ashd.states import SessionStatus
from ashd.store import AgentRow, Store, StoreError

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 30.0
REFILL_DELAY_S = 1.0
"""How long after a claim its pre-warm is replaced. At once, the new sandbox's set-up (~35 ms
in ashd's own process) and its CLI's boot (~0.7 s of CPU) ran beside the claimed session's
first message: ~90 ms slower to its first event on a 2-core host (issue #12)."""


WarmKey = tuple[str, str, int]


def _warm_key(agent: AgentRow) -> WarmKey:
    return agent.tenant_id, agent.name, agent.version


class Escalated(RuntimeError):
    """Raised in the session supervisor when session actors crash beyond its budget: it
    crashes itself, so the root decides (OTP escalation)."""


class SessionSupervisor(FaultTarget, pykka.ThreadingActor):
    """one_for_one over SessionActors. Its methods are quick; slow work is in the children.

    A child that crashes tells ``session_crashed`` (from its ``on_failure``, after giving its
    sandbox back); the restart policy then lets the next request start a new actor from the
    store, fails the session (``error``, with the reason: too many crashes of it, or its
    tenant's restart budget is spent), or escalates when two tenants' budgets are spent at
    once: this supervisor crashes itself and the root decides.
    """

    _create_future = staticmethod(answered_future)  # replies wake the loop (ashd/actors/answers.py)

    def __init__(self, deps: SessionDeps, policy: TreePolicy, record: SupervisionRecord,
                 crashed: Crashed | None = None) -> None:
        """Provides the children's shared timer thread and snapshot worker (stopped with it)."""
        super().__init__()
        self._deps = replace(deps, timers=deps.timers or Timers(),
                             snapshot_worker=deps.snapshot_worker or SnapshotWorker(
                                 deps.snapshots, deps.store, deps.metrics,
                                 digest=deps.snapshot_digest or workspace_digest))
        self._policy = policy
        self._record = record
        self._crashed = crashed
        self._children: dict[str, pykka.ActorRef[SessionActor]] = {}
        self._handed_out: dict[str, float] = {}  # session id -> when child() last returned its actor
        # Pre-warmed actors by (tenant, agent name, agent version): never shared across keys.
        self._warm: dict[WarmKey, list[tuple[str, pykka.ActorRef[SessionActor]]]] = {}
        self._ready: set[str] = set()  # pre-warmed actors whose sandbox is ready (they said so)
        self._targets: dict[tuple[str, str], tuple[int, int]] = {}  # (tenant, agent) -> (version, count)
        self._proxies: dict[str, pykka.ActorProxy[SessionActor]] = {}  # session id -> its actor's proxy
        self.prewarm_hits = 0

    @functools.cached_property
    def _me(self) -> pykka.ActorProxy[SessionSupervisor]:
        """This actor's own proxy, made once (see ``_proxy``)."""
        return self.actor_ref.proxy()

    def on_start(self) -> None:
        me = self._me

        def crashed(session_id: str, tenant_id: str, detail: str) -> object:
            return tell(me.session_crashed, session_id, tenant_id, detail, context=f"crash of session {session_id}")

        self._deps = replace(self._deps, crashed=crashed)

    def prewarm(self, agent: AgentRow, count: int) -> None:
        """Keep ``count`` pre-warmed sandboxes for this agent version (older versions' go)."""
        for key in [k for k in self._warm if k[:2] == (agent.tenant_id, agent.name) and k[2] != agent.version]:
            for sid, ref in self._warm.pop(key):
                self._ready.discard(sid)
                self._proxies.pop(sid, None)
                ref.stop(block=False)
        self._targets[(agent.tenant_id, agent.name)] = (agent.version, count)
        pool = self._warm.setdefault(_warm_key(agent), [])
        self._drop_dead(pool)
        for _ in range(max(0, count - len(pool))):
            session_id = str(uuid.uuid4())
            ref = SessionActor.start(session_id, agent.tenant_id, self._deps, self._me)
            # Told, not awaited: it starts on the new actor's thread. Its proxy is made now, not
            # on the claim's path (pykka introspects the actor for each new proxy).
            tell(self._proxy(session_id, ref).warm_up, agent, context=f"pre-warm of agent {agent.name}")
            pool.append((session_id, ref))

    def warmed(self, session_id: str) -> None:
        """Told by a pre-warmed actor once its sandbox is ready: a claim may take it."""
        self._ready.add(session_id)

    def claim(self, agent: AgentRow) -> pykka.ActorProxy[SessionActor] | None:
        """A ready pre-warmed actor for exactly this tenant, agent and version, or None (none
        is ready: one still warming stays queued, since a cold start is not slower than
        waiting for it here). Never waits on the actor: it said when it was ready; one whose
        sandbox died since refuses the claim (Conflict) and the caller starts cold.

        Its replacement starts :data:`REFILL_DELAY_S` later, not at once: the new sandbox's
        set-up in this process and its CLI's boot would run beside the claimed session's first
        message, the one a client usually sends right after its create.
        """
        pool = self._warm.get(_warm_key(agent), [])
        self._drop_dead(pool)
        index = next((i for i, (sid, _) in enumerate(pool) if sid in self._ready), None)
        if index is None:
            return None
        session_id, ref = pool.pop(index)
        self._ready.discard(session_id)
        self._children[session_id] = ref
        self._handed_out[session_id] = time.monotonic()
        self.prewarm_hits += 1
        self._deps.metrics.resumes.labels("prewarm").inc()
        me = self._me
        assert self._deps.timers is not None
        self._deps.timers.call_later(REFILL_DELAY_S, lambda: tell(
            me.refill, agent, context=f"replenishing pre-warmed sandboxes of agent {agent.name}"))
        return self._proxy(session_id, ref)

    def refill(self, agent: AgentRow) -> None:
        """Told after a claim: pre-warm again up to the agent's count, unless that agent
        version's pre-warms were replaced (a newer version, another count) meanwhile."""
        version, count = self._targets.get((agent.tenant_id, agent.name), (None, 0))
        if version == agent.version:
            self.prewarm(agent, count)

    def child(self, session_id: str, tenant_id: str) -> pykka.ActorProxy[SessionActor]:
        """The live actor of a session, starting one if needed (it loads itself lazily)."""
        ref = self._children.get(session_id)
        if ref is None or not ref.is_alive():
            ref = SessionActor.start(session_id, tenant_id, self._deps, self._me)
            self._children[session_id] = ref
        self._handed_out[session_id] = time.monotonic()
        return self._proxy(session_id, ref)

    def _drop_dead(self, pool: list[tuple[str, pykka.ActorRef[SessionActor]]]) -> None:
        """Forget pre-warmed actors that stopped (a failed start, a lost sandbox)."""
        for sid, ref in [entry for entry in pool if not entry[1].is_alive()]:
            pool.remove((sid, ref))
            self._ready.discard(sid)
            self._proxies.pop(sid, None)

    def _proxy(self, session_id: str, ref: pykka.ActorRef[SessionActor]) -> pykka.ActorProxy[SessionActor]:
        """The actor's proxy, made once per actor (:func:`proxy_once`)."""
        return proxy_once(self._proxies, session_id, ref)

    def live_child(self, session_id: str) -> pykka.ActorProxy[SessionActor] | None:
        """The session's actor if one is alive here (none is started)."""
        ref = self._children.get(session_id)
        return self._proxy(session_id, ref) if ref is not None and ref.is_alive() else None

    def retire(self, session_id: str, actor_urn: str) -> None:
        """Told by an idle session actor: stop it and forget it (a later request starts a new
        one from the store). One no longer registered as this session's child stops all the same."""
        ref = self._children.get(session_id)
        if ref is not None and ref.actor_urn == actor_urn:
            if time.monotonic() - self._handed_out.get(session_id, 0.0) < self._deps.idle_s:
                return  # handed to a caller within its idle time: an ask may be on the way; it asks again later
            del self._children[session_id]
            self._handed_out.pop(session_id, None)
            self._proxies.pop(session_id, None)
        idle = pykka.ActorRegistry.get_by_urn(actor_urn)
        if idle is not None:
            idle.stop(block=False)

    def forget(self, session_id: str) -> None:
        """Stop a session's actor (after it ended). Idempotent."""
        self._policy.forget(session_id)
        self._handed_out.pop(session_id, None)
        self._proxies.pop(session_id, None)
        ref = self._children.pop(session_id, None)
        if ref is not None:
            ref.stop(block=False)

    def session_crashed(self, session_id: str, tenant_id: str, detail: str) -> None:
        """Told by a session actor that crashed (its sandbox is released already)."""
        ref = self._children.get(session_id)
        if ref is not None and not ref.is_alive():
            del self._children[session_id]  # the next request starts a new actor from the store
            self._handed_out.pop(session_id, None)
            self._proxies.pop(session_id, None)
        for pool in self._warm.values():
            pool[:] = [(sid, r) for sid, r in pool if sid != session_id]
        self._ready.discard(session_id)
        decision = self._policy.crashed(session_id, detail, tenant_id)
        if isinstance(decision, Restart):
            self._record.restarted("session")
            log.error("session actor %s crashed (%s); the next request starts a new one", session_id, detail)
        elif isinstance(decision, GiveUp):
            log.error("session actor %s crashed too often: %s", session_id, decision.reason)
            self._fail_session(session_id, tenant_id, decision.reason)
        elif isinstance(decision, Escalate):
            raise Escalated(f"session actors crash too often: {decision.reason}")

    def _fail_session(self, session_id: str, tenant_id: str, reason: str) -> None:
        try:
            row = self._deps.store.get_session(tenant_id, session_id)
            if row is not None and row.status != SessionStatus.ENDED.value:
                self._deps.store.update_session(tenant_id, session_id, status=SessionStatus.ERROR.value,
                                                status_reason=reason, touch=True)
        except StoreError as exc:
            log.error("session %s: error status not stored: %s", session_id, exc)

    def on_failure(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                   tb: TracebackType | None) -> None:
        """Crashed: stop every child (their sandboxes become orphans the pool releases),
        then tell the root, which starts a new session supervisor."""
        try:
            self._stop_children()
        finally:
            if self._crashed is not None:
                self._crashed(crash_detail(exc))

    def on_stop(self) -> None:
        self._stop_children()

    def _stop_children(self) -> None:
        for pool in self._warm.values():
            self._children.update(dict(pool))
        for ref in list(self._children.values()):
            ref.stop(block=False)
        for ref in list(self._children.values()):
            try:
                ref.stop(timeout=STOP_TIMEOUT_S)
            except (pykka.ActorDeadError, pykka.Timeout):
                pass
        self._children.clear()
        self._proxies.clear()
        # The children's shared threads go with them (also after a crash: on_stop does not run then).
        assert self._deps.snapshot_worker is not None and self._deps.timers is not None
        self._deps.snapshot_worker.stop()
        self._deps.timers.stop()


class Tree:
    """What callers use to reach the tree: ``pool`` and ``sessions`` are proxies to the
    CURRENT actors (resolved through the registry at each access: after a restart they name
    the new ones; while one is down they raise Unavailable, a 503). Thread-safe."""

    def __init__(self, registry: ChildRegistry, exits: ExitBoard, logs: LogBook | None = None,
                 starts: StartRecord | None = None, supervision: SupervisionRecord | None = None,
                 gate: StartGate | None = None, turn_gates: TurnGates | None = None) -> None:
        self.registry = registry
        self.exits = exits
        self.logs = logs or LogBook()  # agent process output per session (/logs)
        self.starts = starts or StartRecord()  # sandbox starts, for /health's verdict
        self.supervision = supervision or SupervisionRecord()  # restarts and failed children
        self.gate = gate  # start admission (shared by every session actor); None: unbounded
        self.turn_gates = turn_gates or TurnGates()  # warm, idle sessions' next turns (ashd/actors/turn_gate.py)

    @property
    def pool(self) -> pykka.ActorProxy[PoolActor]:
        return self.registry.proxy(POOL)

    @property
    def sessions(self) -> pykka.ActorProxy[SessionSupervisor]:
        return self.registry.proxy(SESSIONS)


POOL, SESSIONS = "pool", "sessions"


def build_tree(config: Config, store: Store, launcher: Launcher, metrics: Metrics,
               prewarm: Callable[[AgentRow], int] = lambda agent: 0, exits: ExitBoard | None = None,
               logs: LogBook | None = None) -> tuple[Tree, list[ChildSpec]]:
    """The tree callers use, and the root's actor children in start order: the pool, then
    the session supervisor (which depends on the pool: rest_for_one restarts it with it).
    ``prewarm(agent)``: how many pre-warmed sandboxes each agent gets whenever a session
    supervisor starts (at start-up, and again after a restart lost the previous ones).
    ``exits`` and ``logs``: the runtime's (it reads them); new ones if not given."""
    registry = ChildRegistry()
    record = SupervisionRecord(metrics)
    exits, logs = exits or ExitBoard(), logs or LogBook()
    turn_gates = TurnGates()
    restarts = RestartGovernor(config.supervision, metrics=metrics)
    starts = StartRecord(config.supervision.degraded_after_failed_starts, restarts.budget_spent)
    disk = disk_ledger(config, store, launcher)
    snapshots = make_snapshotter(config)
    remote_snapshots = getattr(launcher, "snapshots_over", None)  # sandboxes on runners save there
    if remote_snapshots is not None:
        snapshots = remote_snapshots(snapshots)
    gate = StartGate(start_slots(config.pool), config.pool.max_queued_starts)  # outlives session supervisors

    settle = getattr(launcher, "settled", None)  # a launcher whose teardown outlasts its stop

    def start_pool(crashed: Crashed) -> pykka.ActorRef[PoolActor]:
        return PoolActor.start(config.pool, launcher, store, exits, logs, disk, config.sandbox.disk_mb,
                               crashed=crashed, settle=settle)

    def start_sessions(crashed: Crashed) -> pykka.ActorRef[SessionSupervisor]:
        pool = registry.proxy(POOL)
        deps = SessionDeps(
            store=store, pool=pool, layout=Layout(config.data_dir), model=config.model, sandbox=config.sandbox,
            ready_timeout_s=config.pool.bridge_ready_timeout_s, stop_timeout_s=config.pool.stop_grace_s + 10,
            snapshots=snapshots, restarts=restarts, cli_workspace=getattr(launcher, "cli_workspace", None),
            metrics=metrics, credential_key=config.auth.credential_key, settle=settle,
            starts=starts, exits=exits, idle_s=config.supervision.session_actor_idle_s, gate=gate,
            snapshot_digest=getattr(launcher, "snapshot_digest", None),
            discard_elsewhere=getattr(launcher, "discard", None), turn_gates=turn_gates,
        )
        ref = SessionSupervisor.start(deps, TreePolicy.for_sessions(config.supervision), record, crashed)
        # Sandboxes of a previous session supervisor's actors have no owner any more.
        tell(pool.release_orphans, context="session supervisor started")
        for agent in store.list_all_agents():
            tell(ref.proxy().prewarm, agent, prewarm(agent), context=f"pre-warm of agent {agent.name}")
        return ref

    children = [
        ChildSpec(POOL, start_pool, actor_ping(lambda pool: pool.stats()), actor_stop),
        ChildSpec(SESSIONS, start_sessions, actor_ping(lambda sessions: sessions.prewarm_hits), actor_stop),
    ]
    return Tree(registry, exits, logs, starts, record, gate, turn_gates), children


def disk_ledger(config: Config, store: Store, launcher: Launcher) -> DiskLedger | None:
    """Admission of workspace images, when the launcher makes them (the isolating one)."""
    if not getattr(launcher, "makes_disk_images", False):
        return None
    sb = config.sandbox
    return DiskLedger(Layout(config.data_dir), store, sb.disk_reserve_mb, sb.disk_reserve_percent)


def make_snapshotter(config: Config) -> Snapshotter:
    """Local snapshots under <data>/snapshots unless ``snapshot.url`` names another store."""
    snap = config.snapshot
    store = blob_store_from_url(snap.url or None, config.data_dir,
                                endpoint_url=snap.s3_endpoint or None, region=snap.s3_region or None)
    return Snapshotter(store, config.data_dir / "tmp", max_bytes=snap.max_bytes, floor=store_floor(config))
