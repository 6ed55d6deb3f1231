"""A session actor's world with fakes only at the seams: a launcher that runs tiny shell
programs instead of the bridge, a manual clock, timers the test fires, a real SQLite store,
a real PoolActor and real SandboxActors."""

from __future__ import annotations

import random
import subprocess
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pykka

from ashd.actors.exits import ExitBoard
from ashd.actors.messages import Pending
from ashd.actors.pool import PoolActor
from ashd.actors.restarts import RestartGovernor
from ashd.actors.session import SessionActor
from ashd.actors.session_deps import SessionDeps
from ashd.actors.snapshot_worker import SnapshotWorker
from ashd.actors.timers import Timer
from ashd.config import ModelConfig, PoolConfig, SandboxConfig, SupervisionConfig
from ashd.layout import Layout
from ashd.metrics import Metrics
from ashd.options import SessionOptions
from ashd.policy import ManualClock
from ashd.sandbox.launcher import SandboxSpec
from ashd.snapshot.snapshots import Snapshotter
from ashd.snapshot.store import LocalBlobStore
from ashd.store import AgentRow, Store

T = TypeVar("T")
TENANT = "default"

# Programs standing in for the bridge (same stdio contract: the byte R on stdout when ready).
READY = "printf R; exec 1>&-; exec sleep 600"
DIE_AT_START = "echo 'boom: missing thing' >&2; exit 7"


def ready_after(gate: Path) -> str:
    """Ready only once the file ``gate`` exists (a start the test holds open)."""
    return f"while [ ! -e {gate} ]; do sleep 0.02; done; printf R; exec 1>&-; exec sleep 600"


class ShellLauncher:
    """Runs ``programs`` in turn (the last one again and again) instead of the bridge."""

    name = "shell"

    def __init__(self, *programs: str) -> None:
        self.programs = list(programs)
        self.spawned: list[int] = []
        self._lock = threading.Lock()

    def argv(self, spec: SandboxSpec) -> list[str]:
        """What runs for ``spec`` (a subclass may run something else)."""
        with self._lock:
            program = self.programs.pop(0) if len(self.programs) > 1 else self.programs[0]
        return ["/bin/sh", "-c", program]

    def spawn(self, spec: SandboxSpec) -> subprocess.Popen[bytes]:
        argv = self.argv(spec)
        with open(spec.log_path, "ab") as log:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self.spawned.append(proc.pid)
        return proc

    def exit_reason(self, spec: SandboxSpec, returncode: int) -> str | None:
        return None

    def cleanup(self, spec: SandboxSpec) -> None:
        return None


class FakeTimers:
    """Timers that run only when the test says so (the clock is manual too)."""

    def __init__(self) -> None:
        self.scheduled: list[tuple[float, Timer]] = []
        self._lock = threading.Lock()

    def call_later(self, delay_s: float, fn: Callable[[], object]) -> Timer:
        timer = Timer(delay_s, fn)
        with self._lock:
            self.scheduled.append((delay_s, timer))
        return timer

    def pending(self, shorter_than: float) -> list[float]:
        with self._lock:
            return [d for d, t in self.scheduled if not t.cancelled and d < shorter_than]

    def fire(self, shorter_than: float) -> int:
        """Run the live timers of less than ``shorter_than`` seconds; how many ran."""
        with self._lock:
            due = [(d, t) for d, t in self.scheduled if not t.cancelled and d < shorter_than]
            self.scheduled = [(d, t) for d, t in self.scheduled if (d, t) not in due]
        for _, timer in due:
            timer.fn()
        return len(due)

    def stop(self) -> None:
        return None


@dataclass
class World:
    tmp: Path
    store: Store
    pool: Any
    deps: SessionDeps
    launcher: ShellLauncher
    clock: ManualClock
    timers: Any
    agent: AgentRow
    exits: ExitBoard
    refs: list[pykka.ActorRef[Any]] = field(default_factory=list)

    def session(self, session_id: str | None = None) -> pykka.ActorProxy[SessionActor]:
        ref = SessionActor.start(session_id or str(uuid.uuid4()), TENANT, self.deps)
        self.refs.append(ref)
        return ref.proxy()

    def create(self, options: SessionOptions | None = None) -> tuple[pykka.ActorProxy[SessionActor], str]:
        actor = self.session()
        row = settle(lambda: actor.create(self.agent, options or SessionOptions()))
        return actor, row.id


def settle(call: Callable[[], pykka.Future[Any]], timeout: float = 30.0) -> Any:
    """What the callers do: ask, and while the answer is Pending, wait for it and ask again."""
    while isinstance(reply := call().get(timeout=timeout), Pending):
        reply.until.result(timeout=timeout)
    return reply


def make_world(tmp: Path, launcher: ShellLauncher, *, timers: Any = None, snapshots: Any = None,
               max_sandboxes: int = 4, idle_s: float = 1000.0, store: Store | None = None,
               worker_digest: Callable[[Path], str | None] | None = None) -> World:
    if store is None:
        store = Store(f"sqlite:///{tmp / 'ash.db'}")
        store.migrate()
    folder = tmp / "agent"
    folder.mkdir(exist_ok=True)
    (folder / "CLAUDE.md").write_text("You are a test agent.")
    agent = store.upsert_agent(TENANT, "helper", str(folder), {})
    exits = ExitBoard()
    pool_ref = PoolActor.start(PoolConfig(max_sandboxes=max_sandboxes, bridge_ready_timeout_s=10, stop_grace_s=1),
                               launcher, store, exits)
    clock = ManualClock(1000.0)
    metrics = Metrics()
    restarts = RestartGovernor(SupervisionConfig(), clock=clock, rng=random.Random(7), metrics=metrics)
    snaps = snapshots or Snapshotter(LocalBlobStore(tmp / "snapshots"), tmp / "snaptmp")
    worker = (SnapshotWorker(snaps, store, metrics) if worker_digest is None
              else SnapshotWorker(snaps, store, metrics, digest=worker_digest))
    timers = timers or FakeTimers()
    deps = SessionDeps(store=store, pool=pool_ref.proxy(), layout=Layout(tmp / "data"), model=ModelConfig(),
                       sandbox=SandboxConfig(), ready_timeout_s=10, stop_timeout_s=15, snapshots=snaps,
                       restarts=restarts, metrics=metrics, exits=exits, idle_s=idle_s, timers=timers,
                       snapshot_worker=worker)
    return World(tmp, store, pool_ref.proxy(), deps, launcher, clock, timers, agent, exits, [pool_ref])

