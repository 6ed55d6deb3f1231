"""SessionDeps: what every session actor is given by its supervisor (frozen, shared)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pykka

from ashd.actors.exits import ExitBoard
from ashd.actors.pool import PoolActor
from ashd.actors.restarts import RestartGovernor
from ashd.actors.snapshot_worker import SnapshotWorker
from ashd.actors.start_gate import StartGate
from ashd.actors.timers import Timers
from ashd.actors.turn_gate import TurnGates
from ashd.actors.vitals import StartRecord
from ashd.config import ModelConfig, SandboxConfig, Secret
from ashd.layout import Layout
from ashd.metrics import Metrics
from ashd.snapshot.snapshots import Snapshotter
from ashd.store import Store

DEFAULT_IDLE_S = 300.0


@dataclass(frozen=True)
class SessionDeps:
    store: Store
    pool: pykka.ActorProxy[PoolActor]
    layout: Layout
    model: ModelConfig
    sandbox: SandboxConfig
    ready_timeout_s: float
    stop_timeout_s: float
    snapshots: Snapshotter
    restarts: RestartGovernor
    cli_workspace: str | None = None  # the workspace path as the CLI sees it, if remapped
    metrics: Metrics = field(default_factory=Metrics)
    credential_key: Secret = field(default_factory=lambda: Secret(""))  # ASH_CREDENTIAL_KEY (ashd/store/vault.py)
    # Waits for a sandbox's teardown to finish (the launcher's ``settled``); None: nothing to wait for.
    settle: Callable[[str, float], bool] | None = None
    starts: StartRecord = field(default_factory=StartRecord)  # every start's outcome, for /health
    exits: ExitBoard | None = None  # exits by pid, recorded the moment they happen (shared with the pool)
    idle_s: float = DEFAULT_IDLE_S  # a quiet actor stops after this long (supervision.session_actor_idle_s)
    # Shared by every session; the SessionSupervisor provides both (and stops them).
    timers: Timers | None = None
    snapshot_worker: SnapshotWorker | None = None
    # What tells an unchanged workspace; None: ashd/snapshot/fingerprint.py's digest. A launcher
    # whose workspaces live elsewhere (on a runner) says "never known": every request saves.
    snapshot_digest: Callable[[Path], str | None] | None = None
    # Removes a sandbox's folder kept elsewhere (the remote launcher's: on its runner); None: none is.
    discard_elsewhere: Callable[[str], None] | None = None
    # Told (session id, tenant id, why) when the actor crashed; set by the session supervisor.
    crashed: Callable[[str, str, str], object] | None = None
    gate: StartGate | None = None  # the daemon's start admission (pool.max_concurrent_starts); None: unbounded
    # Where the runtime takes a warm, idle session's turn without an ask (ashd/actors/turn_gate.py);
    # None: every turn is asked for.
    turn_gates: TurnGates | None = None
