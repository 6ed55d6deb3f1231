"""UnroutedRuntime: a coordinator's session runtime until sessions are routed to runners.

A coordinator hosts no sandbox (docs/scale-out.md). Until the remote runtime (sessions driven
on runners over their links) takes its place, this one answers every call that needs a
sandbox with 503: "No runners available" while no live runner is registered (Ash's answer),
else that this build cannot route to the runners it has. Stored events replay as anywhere
else. Its supervision tree holds the coordinator's own children (the store, the liveness
sweep, the HTTP listener). Loop thread only, except where a method says it blocks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable, Iterable
from typing import Any, NoReturn

import pykka

from ashd.actors.children import ChildRegistry, ChildSpec, SupervisionRecord
from ashd.actors.messages import PoolStats
from ashd.actors.root import RootSupervisor, TreePolicy, start_root
from ashd.actors.vitals import OK, Verdict
from ashd.config import Config
from ashd.errors import BadRequest, Unavailable
from ashd.metrics import LiveFigures, Metrics
from ashd.options import MessageOptions, SessionOptions
from ashd.runtime.following import TurnBell
from ashd.runtime.offload import Offload
from ashd.runtime.streams import SessionStreams, turn_frames, with_heartbeats
from ashd.runtime.turn import Turn
from ashd.runtime.watchdog import Idle
from ashd.sandbox.logring import LogLine
from ashd.store import AgentRow, SessionRow, Store
from ashd.store import runner_queries as rq
from ashd.wire.protocol import ExecResult

log = logging.getLogger(__name__)

TREE_START_TIMEOUT_S = 60.0
TREE_STOP_TIMEOUT_S = 60.0
NO_ROUTING = ("this ashd cannot route sessions to runners yet (the remote session runtime is being built; "
              "docs/scale-out.md): run it standalone to host sessions")


class UnroutedRuntime:
    def __init__(self, config: Config, store: Store, offload: Offload, metrics: Metrics) -> None:
        self._config = config
        self._store = store
        self._offload = offload
        self._registry = ChildRegistry()
        self._record = SupervisionRecord(metrics)
        self._streams = SessionStreams(store, offload, TurnBell(), lambda session_id: None,
                                       config.pool.sse_heartbeat_s)
        self._root: pykka.ActorRef[RootSupervisor] | None = None

    # -- the tree (the daemon's) ---------------------------------------------

    def supervise(self, children: list[ChildSpec], on_give_up: Callable[[str], object]) -> None:
        """Start the root over ``children`` in order. Blocking: call it off the loop."""
        self._root = start_root(children, self._registry, self._record,
                                TreePolicy.from_config(self._config.supervision), on_give_up, TREE_START_TIMEOUT_S)

    async def stop_tree(self) -> None:
        root = self._root
        if root is not None:
            await asyncio.get_running_loop().run_in_executor(None, lambda: root.stop(timeout=TREE_STOP_TIMEOUT_S))

    def shutdown(self) -> None:
        """Blocking: stop the tree if it still runs."""
        if self._root is not None and self._root.is_alive():
            self._root.stop(timeout=TREE_STOP_TIMEOUT_S)

    # -- what needs a sandbox: 503 ---------------------------------------------

    async def _unplaced(self) -> NoReturn:
        store, timeout = self._store, self._config.cluster.liveness_timeout_s
        live = await self._offload.read(lambda: store.read_with(rq.live, rq.cutoff(store.now(), timeout)))
        if not live:
            raise Unavailable("No runners available: no runner has registered with the coordinators or sent a "
                              f"heartbeat in the last {timeout:g} s; start one with ASH_MODE=runner "
                              "(docs/scale-out.md)")
        raise Unavailable(f"No runners available: {len(live)} runner(s) registered, but {NO_ROUTING}")

    async def create(self, tenant_id: str, agent: AgentRow, options: SessionOptions, *,
                     may_use_prewarmed: bool) -> SessionRow:
        await self._unplaced()

    async def pause(self, tenant_id: str, session_id: str) -> SessionRow:
        await self._unplaced()

    async def resume(self, tenant_id: str, session_id: str) -> SessionRow:
        await self._unplaced()

    async def stop(self, tenant_id: str, session_id: str) -> SessionRow:
        await self._unplaced()

    async def end(self, tenant_id: str, session_id: str) -> SessionRow:
        await self._unplaced()

    async def end_agent_sessions(self, tenant_id: str, session_ids: Iterable[str]) -> None:
        if list(session_ids):
            await self._unplaced()

    async def fork(self, tenant_id: str, session_id: str) -> SessionRow:
        await self._unplaced()

    async def configure(self, tenant_id: str, session_id: str, patch: dict[str, Any]) -> SessionRow:
        await self._unplaced()

    async def send(self, tenant_id: str, session_id: str, options: MessageOptions,
                   received_at: float | None = None) -> Turn:
        await self._unplaced()

    async def interrupt(self, tenant_id: str, session_id: str) -> None:
        await self._unplaced()

    async def exec(self, tenant_id: str, session_id: str, command: str, timeout_ms: int) -> ExecResult:
        await self._unplaced()

    async def inject_fault(self, target: str, session_id: str | None, tenant_id: str) -> None:
        raise BadRequest("A coordinator hosts no actors to crash (fault injection is for standalone ashd)")

    # -- streams and facts: nothing runs here -----------------------------------

    def live_turn(self, session_id: str) -> Turn | None:
        return None

    def holds(self, tenant_id: str, session_id: str) -> bool:
        return False

    def subscribe(self, tenant_id: str, session_id: str, after: int = 0, *,
                  follow: bool = False) -> AsyncGenerator[bytes | Idle, None]:
        return self._streams.subscribe(tenant_id, session_id, after, follow=follow)

    def turn_stream(self, turn: Turn) -> AsyncGenerator[bytes | Idle, None]:
        return with_heartbeats(turn_frames(turn), self._config.pool.sse_heartbeat_s)

    def logs(self, session_id: str, after: int = -1) -> list[LogLine]:
        return []

    def notice(self, session_id: str, payload: dict[str, Any]) -> None:
        log.debug("coordinator: sandbox notice for session %s ignored: %s", session_id, payload.get("type"))

    def prewarm(self, agent: AgentRow, count: int) -> None:
        return None  # sandboxes are the runners'

    # -- health ------------------------------------------------------------

    async def pool_stats(self) -> PoolStats:
        return PoolStats(total=0, warming=0, warm=0, running=0, waiting=0, cold=0, max_capacity=0)

    async def prewarm_hits(self) -> int:
        return 0

    def start_verdict(self) -> Verdict:
        return Verdict(OK)

    def supervision(self) -> dict[str, Any]:
        return self._record.to_json()

    def admission(self) -> dict[str, int]:
        return {}

    async def answers(self, timeout_s: float) -> bool:
        if self._record.gave_up:
            return False
        try:
            return await asyncio.wait_for(self._offload.read(self._store.ping), timeout_s)
        except TimeoutError:
            return False

    def live_figures(self) -> LiveFigures:
        """Blocking (a store read): a reader thread only."""
        return LiveFigures(active_sessions=self._store.count_sessions_with_status("active"), active_sandboxes=0,
                           max_capacity=0)

    async def drain(self, timeout_s: float) -> None:
        return None
