"""Bounded threads: 300 sessions created, used and left idle; the thread count comes back.

Real actors (session supervisor, pool, sandbox and session actors), a real SQLite store, the
real timer thread and snapshot worker; only the bridge is a tiny shell program, so 300
sessions are cheap. The pool's idle sweep evicts the sandboxes, then the quiet session actors
retire through their supervisor.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pykka
import pytest

from ashd.actors.children import SupervisionRecord
from ashd.actors.exits import ExitBoard
from ashd.actors.pool import PoolActor
from ashd.actors.restarts import RestartGovernor
from ashd.actors.root import TreePolicy
from ashd.actors.session_deps import SessionDeps
from ashd.actors.supervisor import SessionSupervisor
from ashd.config import ModelConfig, PoolConfig, SandboxConfig, SupervisionConfig
from ashd.layout import Layout
from ashd.options import SessionOptions
from ashd.snapshot.snapshots import Snapshotter
from ashd.snapshot.store import LocalBlobStore
from ashd.store import Store
from tests.actors.harness import READY, TENANT, ShellLauncher, settle

SESSIONS = 300


@pytest.fixture(autouse=True)
def stop_actors() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all(timeout=60)


def threads_settle_at(limit: int, timeout: float = 60.0) -> int:
    """The thread count once it is at most ``limit`` (or the last count seen at the deadline)."""
    deadline = time.monotonic() + timeout
    while (count := threading.active_count()) > limit and time.monotonic() < deadline:
        time.sleep(0.1)
    return count


def test_300_idle_sessions_give_their_threads_back(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'ash.db'}")
    store.migrate()
    (tmp_path / "agent").mkdir()
    (tmp_path / "agent" / "CLAUDE.md").write_text("test agent")
    agent = store.upsert_agent(TENANT, "helper", str(tmp_path / "agent"), {})
    exits = ExitBoard()
    pool = PoolActor.start(PoolConfig(max_sandboxes=16, bridge_ready_timeout_s=10, stop_grace_s=1,
                                      idle_timeout_ms=300, sweep_interval_s=0.2),
                           ShellLauncher(READY), store, exits).proxy()
    snaps = Snapshotter(LocalBlobStore(tmp_path / "snapshots"), tmp_path / "snaptmp")
    deps = SessionDeps(store=store, pool=pool, layout=Layout(tmp_path / "data"), model=ModelConfig(),
                       sandbox=SandboxConfig(), ready_timeout_s=10, stop_timeout_s=15, snapshots=snaps,
                       restarts=RestartGovernor(SupervisionConfig(budget_limit=1000), rng=random.Random(1)),
                       exits=exits, idle_s=0.5)
    sessions = SessionSupervisor.start(deps, TreePolicy.for_sessions(SupervisionConfig()), SupervisionRecord()).proxy()
    sessions.prewarm_hits.get(timeout=10)  # started: its timer thread and snapshot worker count in the baseline
    baseline = threading.active_count()

    ids = []
    for _ in range(SESSIONS):
        session_id = str(uuid.uuid4())
        actor = sessions.child(session_id, TENANT).get(timeout=10)
        assert settle(lambda a=actor: a.create(agent, SessionOptions())).status == "active"
        settle(actor.begin_turn)
        actor.end_turn().get(timeout=10)
        ids.append(session_id)
    assert threading.active_count() > baseline  # live sandboxes and actors hold threads meanwhile

    assert threads_settle_at(baseline) <= baseline
    assert pool.stats().get(timeout=10).total == 0
    statuses = {row.status for row in store.list_sessions(TENANT, None, None)}
    # Every one let its sandbox go, nothing lost: idled out (paused), or parked at the cap (active).
    assert statuses <= {"paused", "active"} and "paused" in statuses
    assert store.warm_session_ids() == set()

    # A retired session comes back from the store on demand.
    actor = sessions.child(ids[0], TENANT).get(timeout=10)
    assert settle(actor.resume).status == "active"
    assert settle(actor.begin_turn).session_id == ids[0]
