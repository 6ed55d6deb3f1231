"""PoolActor: owns every live SandboxActor; capacity and sandbox states.

Runs on its own pykka thread and never blocks on a sandbox starting: ``reserve`` only
creates the SandboxActor and returns its proxy; the session actor that asked drives the
slow start on its own thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import pykka

from ashd.actors.messages import BridgeExited, PoolStats
from ashd.actors.sandbox import SandboxActor
from ashd.config import PoolConfig
from ashd.errors import Unavailable
from ashd.sandbox.launcher import Launcher, SandboxSpec
from ashd.states import SandboxState
from ashd.store import SandboxRow, Store
from ashd.store.timestamps import utc_now

log = logging.getLogger(__name__)

ExitListener = Callable[[BridgeExited], None]


@dataclass
class _Live:
    ref: pykka.ActorRef[SandboxActor]
    spec: SandboxSpec
    state: SandboxState
    on_exit: ExitListener
    last_used: float


class PoolActor(pykka.ThreadingActor):
    def __init__(self, config: PoolConfig, launcher: Launcher, store: Store) -> None:
        super().__init__()
        self._config = config
        self._launcher = launcher
        self._store = store
        self._live: dict[str, _Live] = {}

    def reserve(self, spec: SandboxSpec, on_exit: ExitListener) -> pykka.ActorProxy[SandboxActor]:
        """Take a slot for a new sandbox. Raises Unavailable at capacity."""
        if spec.sandbox_id in self._live:
            self._drop(spec.sandbox_id)
        if len(self._live) >= self._config.max_sandboxes:
            raise Unavailable(
                f"Sandbox capacity reached ({self._config.max_sandboxes}); retry later or end idle sessions",
                retry_after_s=5,
            )
        me = self.actor_ref.proxy()
        ref = SandboxActor.start(
            spec, self._launcher, lambda fact: me.on_bridge_exited(fact),
            self._config.bridge_ready_timeout_s, self._config.stop_grace_s,
        )
        self._live[spec.sandbox_id] = _Live(ref, spec, SandboxState.WARMING, on_exit, time.monotonic())
        self._persist(spec, SandboxState.WARMING)
        return ref.proxy()

    def mark(self, sandbox_id: str, state: SandboxState) -> None:
        live = self._live.get(sandbox_id)
        if live is None or live.state is state:
            return
        live.state = state
        live.last_used = time.monotonic()
        self._store.set_sandbox_state(sandbox_id, state.value)

    def release(self, sandbox_id: str) -> None:
        """Stop a sandbox's bridge (TERM, grace, KILL) and forget it. Idempotent."""
        self._drop(sandbox_id)

    def on_bridge_exited(self, fact: BridgeExited) -> None:
        live = self._live.get(fact.sandbox_id)
        if live is None or fact.expected:
            return
        # An unexpected exit: the sandbox is gone; tell its session, keep the row as cold.
        self._drop(fact.sandbox_id)
        live.on_exit(fact)

    def stats(self) -> PoolStats:
        counts = {state: 0 for state in SandboxState}
        for live in self._live.values():
            counts[live.state] += 1
        return PoolStats(
            total=len(self._live),
            warming=counts[SandboxState.WARMING],
            warm=counts[SandboxState.WARM],
            running=counts[SandboxState.RUNNING],
            waiting=counts[SandboxState.WAITING],
            cold=counts[SandboxState.COLD],
            max_capacity=self._config.max_sandboxes,
        )

    def on_stop(self) -> None:
        """Stop every sandbox in parallel (each on its own actor thread), then wait."""
        futures = [live.ref.proxy().stop_bridge() for live in self._live.values()]
        for future in futures:
            try:
                future.get(timeout=self._config.stop_grace_s + 10)
            except Exception:  # boundary: shutdown must go on for the others
                log.exception("a sandbox did not stop cleanly")
        for sandbox_id in list(self._live):
            self._drop(sandbox_id)

    def _drop(self, sandbox_id: str) -> None:
        live = self._live.pop(sandbox_id, None)
        if live is None:
            return
        # Not waiting: the sandbox's own thread does TERM, grace, KILL; the pool stays free.
        live.ref.stop(block=False)
        self._store.set_sandbox_state(sandbox_id, SandboxState.COLD.value)

    def _persist(self, spec: SandboxSpec, state: SandboxState) -> None:
        now = utc_now()
        self._store.upsert_sandbox(SandboxRow(
            id=spec.sandbox_id, tenant_id=spec.tenant_id, session_id=spec.session_id,
            agent_name=spec.agent_name, state=state.value, workspace_dir=str(spec.workspace),
            created_at=now, last_used_at=now,
        ))
