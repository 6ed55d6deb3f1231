"""The actor tree: RootSupervisor -> PoolActor, SessionSupervisor -> SessionActor*.

Children start in order and stop in reverse. The session supervisor keys children by
session id, never by a cached ActorRef: a dead child is replaced by a new actor that
rehydrates from the store on first use.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

import pykka

from ashd.actors.exits import ExitBoard
from ashd.actors.pool import PoolActor
from ashd.actors.restarts import RestartGovernor
from ashd.actors.session import SessionActor, SessionDeps
from ashd.actors.snapshot_worker import SnapshotWorker
from ashd.actors.timers import Timers
from ashd.actors.vitals import StartRecord
from ashd.config import Config
from ashd.layout import Layout
from ashd.metrics import Metrics
from ashd.sandbox.admission import DiskLedger, reserve_bytes
from ashd.sandbox.launcher import Launcher
from ashd.sandbox.logring import LogBook
from ashd.snapshot.room import DiskFloor
from ashd.snapshot.snapshots import Snapshotter
from ashd.snapshot.store import blob_store_from_url
from ashd.store import AgentRow, Store

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 30.0


WarmKey = tuple[str, str, int]


def _warm_key(agent: AgentRow) -> WarmKey:
    return agent.tenant_id, agent.name, agent.version


class SessionSupervisor(pykka.ThreadingActor):
    """one_for_one over SessionActors. Its methods are quick; slow work is in the children."""

    def __init__(self, deps: SessionDeps) -> None:
        """Provides the children's shared timer thread and snapshot worker (stopped with it)."""
        super().__init__()
        self._deps = replace(deps, timers=deps.timers or Timers(),
                             snapshot_worker=deps.snapshot_worker or SnapshotWorker(deps.snapshots, deps.store,
                                                                                    deps.metrics))
        self._children: dict[str, pykka.ActorRef[SessionActor]] = {}
        self._handed_out: dict[str, float] = {}  # session id -> when child() last returned its actor
        # Pre-warmed actors by (tenant, agent name, agent version): never shared across keys.
        self._warm: dict[WarmKey, list[tuple[str, pykka.ActorRef[SessionActor]]]] = {}
        self.prewarm_hits = 0

    def prewarm(self, agent: AgentRow, count: int) -> None:
        """Keep ``count`` pre-warmed sandboxes for this agent version (older versions' go)."""
        for key in [k for k in self._warm if k[:2] == (agent.tenant_id, agent.name) and k[2] != agent.version]:
            for _, ref in self._warm.pop(key):
                ref.stop(block=False)
        pool = self._warm.setdefault(_warm_key(agent), [])
        pool[:] = [(sid, ref) for sid, ref in pool if ref.is_alive()]
        for _ in range(max(0, count - len(pool))):
            session_id = str(uuid.uuid4())
            ref = SessionActor.start(session_id, agent.tenant_id, self._deps, self.actor_ref.proxy())
            ref.proxy().warm_up(agent)  # told, not awaited: it starts on the new actor's thread
            pool.append((session_id, ref))

    def claim(self, agent: AgentRow) -> pykka.ActorProxy[SessionActor] | None:
        """A ready pre-warmed actor for exactly this tenant, agent and version, or None.

        Only asks the oldest candidate whether it is ready (a short ask); one still warming
        stays queued, since a cold start is not slower than waiting for it here.
        """
        pool = self._warm.get(_warm_key(agent), [])
        while pool:
            session_id, ref = pool[0]
            try:
                ready = ref.proxy().warm.get(timeout=1.0)
            except pykka.ActorDeadError:
                pool.pop(0)
                continue
            except pykka.Timeout:
                ready = False
            if not ready:
                return None
            pool.pop(0)
            self._children[session_id] = ref
            self.prewarm_hits += 1
            self._deps.metrics.resumes.labels("prewarm").inc()
            self.actor_ref.proxy().prewarm(agent, len(pool) + 1)  # replenish after this reply
            return ref.proxy()
        return None

    def child(self, session_id: str, tenant_id: str) -> pykka.ActorProxy[SessionActor]:
        """The live actor of a session, starting one if needed (it loads itself lazily)."""
        ref = self._children.get(session_id)
        if ref is None or not ref.is_alive():
            ref = SessionActor.start(session_id, tenant_id, self._deps, self.actor_ref.proxy())
            self._children[session_id] = ref
        self._handed_out[session_id] = time.monotonic()
        return ref.proxy()

    def retire(self, session_id: str, actor_urn: str) -> None:
        """Told by an idle session actor: stop it and forget it (a later request starts a new
        one from the store). One no longer registered as this session's child stops all the same."""
        ref = self._children.get(session_id)
        if ref is not None and ref.actor_urn == actor_urn:
            if time.monotonic() - self._handed_out.get(session_id, 0.0) < self._deps.idle_s:
                return  # handed to a caller within its idle time: an ask may be on the way; it asks again later
            del self._children[session_id]
            self._handed_out.pop(session_id, None)
        idle = pykka.ActorRegistry.get_by_urn(actor_urn)
        if idle is not None:
            idle.stop(block=False)

    def forget(self, session_id: str) -> None:
        """Stop a session's actor (after it ended). Idempotent."""
        ref = self._children.pop(session_id, None)
        self._handed_out.pop(session_id, None)
        if ref is not None:
            ref.stop(block=False)

    def on_stop(self) -> None:
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
        assert self._deps.snapshot_worker is not None and self._deps.timers is not None
        self._deps.snapshot_worker.stop()
        self._deps.timers.stop()


@dataclass(frozen=True)
class Tree:
    """Proxies to the long-lived actors, for the HTTP layer's adapter."""

    pool: pykka.ActorProxy[PoolActor]
    sessions: pykka.ActorProxy[SessionSupervisor]
    exits: ExitBoard
    logs: LogBook = field(default_factory=LogBook)  # agent process output per session (/logs)
    starts: StartRecord = field(default_factory=StartRecord)  # sandbox starts, for /health's verdict


class RootSupervisor(pykka.ThreadingActor):
    """Starts the tree in order (pool, sessions) and stops it in reverse."""

    def __init__(self, config: Config, store: Store, launcher: Launcher, metrics: Metrics | None = None,
                 exits: ExitBoard | None = None, logs: LogBook | None = None) -> None:
        """``exits`` and ``logs``: the runtime's (it reads them); new ones if not given."""
        super().__init__()
        self._config = config
        self._exits = exits or ExitBoard()
        self._logs = logs or LogBook()
        self._metrics = metrics or Metrics()
        self._store = store
        self._launcher = launcher
        self._started: list[pykka.ActorRef[Any]] = []
        self._tree: Tree | None = None

    def on_start(self) -> None:
        exits, logs = self._exits, self._logs
        restarts = RestartGovernor(self._config.supervision, metrics=self._metrics)
        starts = StartRecord(self._config.supervision.degraded_after_failed_starts, restarts.budget_spent)
        pool = PoolActor.start(self._config.pool, self._launcher, self._store, exits, logs, self._disk_ledger(),
                               self._config.sandbox.disk_mb)
        self._started.append(pool)
        deps = SessionDeps(
            store=self._store,
            pool=pool.proxy(),
            layout=Layout(self._config.data_dir),
            model=self._config.model,
            sandbox=self._config.sandbox,
            ready_timeout_s=self._config.pool.bridge_ready_timeout_s,
            stop_timeout_s=self._config.pool.stop_grace_s + 10,
            snapshots=make_snapshotter(self._config),
            restarts=restarts,
            cli_workspace=getattr(self._launcher, "cli_workspace", None),
            metrics=self._metrics,
            credential_key=self._config.auth.credential_key,
            settle=getattr(self._launcher, "settled", None),
            starts=starts,
            exits=exits,
            idle_s=self._config.supervision.session_actor_idle_s,
        )
        sessions = SessionSupervisor.start(deps)
        self._started.append(sessions)
        self._tree = Tree(pool=pool.proxy(), sessions=sessions.proxy(), exits=exits, logs=logs, starts=starts)
        log.info("actor tree started: pool (max %d sandboxes), session supervisor", self._config.pool.max_sandboxes)

    def _disk_ledger(self) -> DiskLedger | None:
        """Admission of workspace images, when the launcher makes them (the isolating one)."""
        if not getattr(self._launcher, "makes_disk_images", False):
            return None
        sb = self._config.sandbox
        return DiskLedger(Layout(self._config.data_dir), self._store, sb.disk_reserve_mb, sb.disk_reserve_percent)

    def tree(self) -> Tree:
        assert self._tree is not None
        return self._tree

    def on_stop(self) -> None:
        for ref in reversed(self._started):
            try:
                ref.stop(timeout=STOP_TIMEOUT_S)
            except (pykka.ActorDeadError, pykka.Timeout):
                log.error("%s did not stop within %.0fs", ref, STOP_TIMEOUT_S)
        log.info("actor tree stopped")


def make_snapshotter(config: Config) -> Snapshotter:
    """Local snapshots under <data>/snapshots unless ``snapshot.url`` names another store."""
    snap = config.snapshot
    store = blob_store_from_url(snap.url or None, config.data_dir,
                                endpoint_url=snap.s3_endpoint or None, region=snap.s3_region or None)
    return Snapshotter(store, config.data_dir / "tmp", max_bytes=snap.max_bytes, floor=snapshot_floor(config))


def snapshot_floor(config: Config) -> DiskFloor:
    """Half the disk reserve is the store's alone: snapshots may use the other half."""
    sb = config.sandbox
    st = os.statvfs(config.data_dir)
    return DiskFloor(config.data_dir, reserve_bytes(st.f_blocks * st.f_frsize, sb.disk_reserve_mb,
                                                    sb.disk_reserve_percent) // 2)
