"""SandboxActor and PoolActor with real child processes behind a scripted launcher seam."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import psutil
import pykka
import pytest

from ashd.actors.messages import BridgeExited
from ashd.actors.pool import PoolActor
from ashd.actors.sandbox import SandboxActor
from ashd.config import PoolConfig
from ashd.errors import InsufficientStorage, SandboxFailed, StartTimedOut, Unavailable
from ashd.sandbox.launcher import SandboxSpec
from ashd.states import SandboxState
from ashd.store import Store
from ashd.store.queue_queries import NewItem
from ashd.wire.settings import BridgeSettings

READY_THEN_SLEEP = "import os,sys,time; os.write(1,b'R'); os.close(1); time.sleep(600)"
READY_THEN_EXIT = "import os,sys,time; os.write(1,b'R'); os.close(1); time.sleep(0.2); sys.exit(3)"
DIE_AT_START = "import sys; sys.stderr.write('boom: missing thing\\n'); sys.exit(7)"
IGNORE_TERM = ("import os,signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
               "os.write(1,b'R'); os.close(1); time.sleep(600)")
WITH_GRANDCHILD = ("import os,subprocess,time; subprocess.Popen(['sleep','600'], start_new_session=True); "
                   "os.write(1,b'R'); os.close(1); time.sleep(600)")


class ScriptLauncher:
    """Runs a tiny Python program instead of the bridge (same stdio and session contract)."""

    name = "script"

    def __init__(self, code: str) -> None:
        self.code = code
        self.cleaned: list[str] = []

    def spawn(self, spec: SandboxSpec) -> subprocess.Popen[bytes]:
        with open(spec.log_path, "ab") as log:
            return subprocess.Popen([sys.executable, "-c", self.code], stdout=subprocess.PIPE, stderr=log,
                                    stdin=subprocess.DEVNULL, start_new_session=True)

    def exit_reason(self, spec: SandboxSpec, returncode: int) -> str | None:
        return f"script exited {returncode}"

    def cleanup(self, spec: SandboxSpec) -> None:
        self.cleaned.append(spec.sandbox_id)


def make_spec(tmp_path: Path) -> SandboxSpec:
    sid = str(uuid.uuid4())
    root = tmp_path / sid
    root.mkdir()
    settings = BridgeSettings(session_id=sid, socket_path=str(root / "s.sock"), workspace=str(root))
    return SandboxSpec(sid, sid, "agent", "t", root, root / "s.sock", {}, settings)


def session_spec(tmp_path: Path) -> SandboxSpec:
    """The spec of an active session's sandbox (its row in the pool's store, see make_pool);
    a spec without a row is a pre-warm's."""
    spec = make_spec(tmp_path)
    Store(f"sqlite:///{tmp_path / 'db.sqlite'}").create_session("t", spec.session_id, "agent", "active")
    return spec


@pytest.fixture(autouse=True)
def stop_actors() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all(timeout=30)


def start(tmp_path: Path, code: str, grace: float = 1.0) -> tuple[pykka.ActorProxy[SandboxActor], list[BridgeExited],
                                                                 threading.Event]:
    exits: list[BridgeExited] = []
    exited = threading.Event()

    def on_exit(fact: BridgeExited) -> None:
        exits.append(fact)
        exited.set()

    ref = SandboxActor.start(make_spec(tmp_path), ScriptLauncher(code), on_exit, 10.0, grace)
    return ref.proxy(), exits, exited


def test_ready_then_stop_is_expected(tmp_path: Path) -> None:
    sandbox, exits, exited = start(tmp_path, READY_THEN_SLEEP)
    started = sandbox.start_bridge().get(timeout=15)
    assert psutil.pid_exists(started.pid)
    assert sandbox.stop_bridge().get(timeout=15) == -signal.SIGTERM
    assert exited.wait(5) and exits[0].expected and exits[0].signal == signal.SIGTERM


def test_crash_after_ready_is_reported_unexpected(tmp_path: Path) -> None:
    sandbox, exits, exited = start(tmp_path, READY_THEN_EXIT)
    sandbox.start_bridge().get(timeout=15)
    assert exited.wait(10)
    assert exits[0].returncode == 3 and not exits[0].expected
    assert exits[0].reason == "script exited 3"


def test_death_at_start_fails_with_log_tail(tmp_path: Path) -> None:
    sandbox, _, _ = start(tmp_path, DIE_AT_START)
    with pytest.raises(SandboxFailed, match="boom: missing thing"):
        sandbox.start_bridge().get(timeout=15)


def test_a_start_still_running_at_its_deadline_is_slow_not_broken(tmp_path: Path) -> None:
    """Load is not a crash: the readiness timeout of a live process is a StartTimedOut (never
    charged to a restart budget), a process that died at start a plain SandboxFailed."""
    launcher = ScriptLauncher("import time; time.sleep(600)")
    spec = make_spec(tmp_path)
    sandbox = SandboxActor.start(spec, launcher, lambda fact: None, 0.3, 1.0).proxy()
    with pytest.raises(StartTimedOut, match=r"not ready within 0\.3s"):
        sandbox.start_bridge().get(timeout=15)
    assert launcher.cleaned == [spec.sandbox_id]
    dead, _, _ = start(tmp_path, DIE_AT_START)
    with pytest.raises(SandboxFailed) as failed:
        dead.start_bridge().get(timeout=15)
    assert not isinstance(failed.value, StartTimedOut)


def test_an_aborted_start_ends_at_once_and_spawns_nothing_after(tmp_path: Path) -> None:
    """The pool's abort (shutdown) ends a start that waits for readiness long before its
    ready timeout, kills the process and cleans up; a start after the abort spawns nothing."""
    launcher = ScriptLauncher("import time; time.sleep(600)")
    spec = make_spec(tmp_path)
    abort = threading.Event()
    sandbox = SandboxActor.start(spec, launcher, lambda fact: None, 300.0, 1.0, abort=abort).proxy()
    pending = sandbox.start_bridge()
    time.sleep(0.3)  # it waits for a ready byte that never comes
    began = time.monotonic()
    abort.set()
    with pytest.raises(SandboxFailed, match="cancelled before it was ready") as failed:
        pending.get(timeout=15)
    assert not isinstance(failed.value, StartTimedOut)
    assert time.monotonic() - began < 10
    assert launcher.cleaned == [spec.sandbox_id]
    with pytest.raises(SandboxFailed, match="was cancelled"):
        sandbox.start_bridge().get(timeout=15)
    assert launcher.cleaned == [spec.sandbox_id]  # nothing was spawned, nothing more to clean
    sandbox.stop_bridge().get(timeout=15)


def test_term_ignored_gets_kill_and_grandchildren_die(tmp_path: Path) -> None:
    sandbox, _, _ = start(tmp_path, IGNORE_TERM, grace=0.3)
    sandbox.start_bridge().get(timeout=15)
    assert sandbox.stop_bridge().get(timeout=15) == -signal.SIGKILL

    sandbox, _, _ = start(tmp_path, WITH_GRANDCHILD)
    pid = sandbox.start_bridge().get(timeout=15).pid
    grandchildren = psutil.Process(pid).children(recursive=True)
    assert grandchildren
    sandbox.stop_bridge().get(timeout=15)
    _, alive = psutil.wait_procs(grandchildren, timeout=5)
    assert alive == []


class Told:
    """What the pool told one owner."""

    def __init__(self) -> None:
        self.lost = threading.Event()
        self.evicted: list[tuple[str, str]] = []
        self.evict_told = threading.Event()
        self.parked: list[tuple[str, str]] = []
        self.park_told = threading.Event()


class OwnerActor(pykka.ThreadingActor):
    """Stands in for a SessionActor: records what the pool tells it."""

    def __init__(self, told: Told) -> None:
        super().__init__()
        self.told = told

    def sandbox_lost(self, fact: BridgeExited) -> None:
        self.told.lost.set()

    def evict(self, sandbox_id: str, reason: str) -> None:
        self.told.evicted.append((sandbox_id, reason))
        self.told.evict_told.set()

    def park(self, sandbox_id: str, reason: str) -> None:
        self.told.parked.append((sandbox_id, reason))
        self.told.park_told.set()


class Owner(Told):
    """A live owner actor (``proxy``) and what it was told."""

    def __init__(self) -> None:
        super().__init__()
        self.ref = OwnerActor.start(self)
        self.proxy = self.ref.proxy()


def make_pool(tmp_path: Path, code: str, **config: float) -> pykka.ActorProxy[PoolActor]:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.migrate()
    settings = {"max_sandboxes": 1, "bridge_ready_timeout_s": 10, "stop_grace_s": 1, **config}
    return PoolActor.start(PoolConfig(**settings), ScriptLauncher(code), store).proxy()  # type: ignore[arg-type]


def test_pool_capacity_and_crash_notification(tmp_path: Path) -> None:
    pool = make_pool(tmp_path, READY_THEN_EXIT)
    owner = Owner()
    spec = session_spec(tmp_path)
    sandbox = pool.reserve(spec, owner.proxy).get(timeout=10)
    pool.mark(spec.sandbox_id, SandboxState.WARM).get(timeout=5)
    pool.mark(spec.sandbox_id, SandboxState.RUNNING).get(timeout=5)
    with pytest.raises(Unavailable, match="running"):  # full, and the only sandbox is running
        pool.reserve(session_spec(tmp_path), Owner().proxy).get(timeout=10)
    sandbox.start_bridge().get(timeout=15)
    assert pool.stats().get(timeout=5).running == 1
    assert owner.lost.wait(10)  # the process exited with code 3: the owner is told
    assert pool.stats().get(timeout=5).total == 0  # and the slot is free again


def test_pool_parks_least_recently_used_idle_at_capacity_and_evicts_idle(tmp_path: Path) -> None:
    pool = make_pool(tmp_path, READY_THEN_SLEEP, max_sandboxes=2, idle_timeout_ms=1000, sweep_interval_s=3600)
    owners = [Owner(), Owner()]
    specs = [session_spec(tmp_path), session_spec(tmp_path)]
    for spec, owner in zip(specs, owners, strict=True):
        pool.reserve(spec, owner.proxy).get(timeout=10).start_bridge().get(timeout=15)
        pool.mark(spec.sandbox_id, SandboxState.WARM).get(timeout=5)
    pool.mark(specs[0].sandbox_id, SandboxState.WAITING).get(timeout=5)
    pool.mark(specs[1].sandbox_id, SandboxState.RUNNING).get(timeout=5)
    pool.reserve(session_spec(tmp_path), Owner().proxy).get(timeout=10)  # full: the idle one must go
    assert owners[0].park_told.wait(5) and owners[0].parked[0][0] == specs[0].sandbox_id
    assert "capacity" in owners[0].parked[0][1] and not owners[1].parked  # never the running one
    assert not owners[0].evicted  # parked (stays active), not evicted (paused)

    pool.mark(specs[1].sandbox_id, SandboxState.WAITING).get(timeout=5)
    assert pool.sweep().get(timeout=5) == 0  # not idle long enough yet
    time.sleep(1.1)  # the idle timeout itself is what is under test
    assert pool.sweep().get(timeout=5) == 1
    assert owners[1].evict_told.wait(5) and "idle" in owners[1].evicted[0][1]


def _two_idle(pool: pykka.ActorProxy[PoolActor], tmp_path: Path) -> tuple[list[Owner], list[SandboxSpec], list[int]]:
    """Two started sandboxes of active sessions, idle between turns, the first used least recently."""
    owners, specs = [Owner(), Owner()], [session_spec(tmp_path), session_spec(tmp_path)]
    pids = []
    for spec, owner in zip(specs, owners, strict=True):
        pids.append(_bridge_pid(pool.reserve(spec, owner.proxy).get(timeout=10)))
    for spec in specs:
        pool.mark(spec.sandbox_id, SandboxState.WARM).get(timeout=5)
        pool.mark(spec.sandbox_id, SandboxState.WAITING).get(timeout=5)
    return owners, specs, pids


def _admitted_only_once_gone(room: Future[None], pool: pykka.ActorProxy[PoolActor], sandbox_id: str,
                             pid: int) -> None:
    time.sleep(0.3)
    assert not room.done()  # the sandbox leaving for it still runs: no slot yet
    pool.release(sandbox_id).get(timeout=5)
    room.result(timeout=15)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # gone first


def test_at_the_cap_a_start_waits_for_a_parked_sandbox_to_be_gone(tmp_path: Path) -> None:
    """The sweep parks a session; a start that comes meanwhile must not count it as gone."""
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.migrate()
    config = PoolConfig(max_sandboxes=2, bridge_ready_timeout_s=10, stop_grace_s=1, park_after_ms=1000)
    pool = PoolActor.start(config, ScriptLauncher(READY_THEN_SLEEP), store).proxy()  # type: ignore[arg-type]
    owners, specs, pids = _two_idle(pool, tmp_path)
    for spec in specs:
        pool.mark(spec.sandbox_id, SandboxState.RUNNING).get(timeout=5)
    pool.mark(specs[1].sandbox_id, SandboxState.WAITING).get(timeout=5)
    assert owners[1].park_told.wait(10)  # idle past park_after_ms: told to park (its CLI still runs)
    third = session_spec(tmp_path)
    pool.reserve(third, Owner().proxy).get(timeout=10)
    room: Future[None] = pool.room(third.sandbox_id).get(timeout=5)
    assert not owners[0].parked  # the running one is never parked
    _admitted_only_once_gone(room, pool, specs[1].sandbox_id, pids[1])


def test_the_cap_holds_when_the_session_parked_for_room_takes_a_turn_instead(tmp_path: Path) -> None:
    pool = make_pool(tmp_path, READY_THEN_SLEEP, max_sandboxes=2, sweep_interval_s=3600)
    owners, specs, pids = _two_idle(pool, tmp_path)
    third = session_spec(tmp_path)
    pool.reserve(third, Owner().proxy).get(timeout=10)
    room: Future[None] = pool.room(third.sandbox_id).get(timeout=5)
    assert owners[0].park_told.wait(5)  # the least recently used one is parked for it
    pool.mark(specs[0].sandbox_id, SandboxState.RUNNING).get(timeout=5)  # but its owner began a turn first
    assert owners[1].park_told.wait(5)  # so the other idle one is parked instead
    _admitted_only_once_gone(room, pool, specs[1].sandbox_id, pids[1])
    assert pool.stats().get(timeout=5).total == 2


def test_a_start_that_waited_in_vain_gives_its_reservation_back(tmp_path: Path) -> None:
    pool = make_pool(tmp_path, READY_THEN_SLEEP, max_sandboxes=1, sweep_interval_s=3600)
    owner, spec = Owner(), session_spec(tmp_path)
    _bridge_pid(pool.reserve(spec, owner.proxy).get(timeout=10))
    pool.mark(spec.sandbox_id, SandboxState.WARM).get(timeout=5)
    waiting = session_spec(tmp_path)
    pool.reserve(waiting, Owner().proxy).get(timeout=10)  # the idle one is told to park; its owner never does
    pool.release(waiting.sandbox_id).get(timeout=5)  # the start gave up waiting (ashd/actors/start.py)
    assert pool.stats().get(timeout=5).total == 1
    pool.mark(spec.sandbox_id, SandboxState.RUNNING).get(timeout=5)
    with pytest.raises(Unavailable, match="running"):  # the one slot is still the running sandbox's
        pool.reserve(session_spec(tmp_path), Owner().proxy).get(timeout=10)


def _all_dead(pids: list[int], timeout_s: float = 15) -> bool:
    """True once none of ``pids`` runs (reaped or a zombie)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        running = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    running.append(pid)
            except psutil.NoSuchProcess:
                pass
        if not running:
            return True
        time.sleep(0.05)
    return False


def _bridge_pid(sandbox: pykka.ActorProxy[SandboxActor]) -> int:
    return sandbox.start_bridge().get(timeout=15).pid


class TearingDownLauncher(ScriptLauncher):
    """A launcher whose teardown (``settled``) lasts until the test ends it."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.asked = threading.Event()  # someone waits for a teardown
        self.torn_down = threading.Event()

    def settled(self, sandbox_id: str, timeout_s: float) -> bool:
        self.asked.set()
        return self.torn_down.wait(timeout_s)


def test_a_slot_comes_back_only_once_the_launchers_teardown_is_over(tmp_path: Path) -> None:
    """A bridge stopped is not a sandbox gone: its killed CLI may still be exiting, so a start
    waiting at the cap is admitted only after the launcher's teardown."""
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.migrate()
    launcher = TearingDownLauncher(READY_THEN_SLEEP)
    config = PoolConfig(max_sandboxes=1, bridge_ready_timeout_s=10, stop_grace_s=1)
    pool = PoolActor.start(config, launcher, store, settle=launcher.settled).proxy()  # type: ignore[arg-type]
    owner, first = Owner(), session_spec(tmp_path)
    pid = _bridge_pid(pool.reserve(first, owner.proxy).get(timeout=10))
    pool.mark(first.sandbox_id, SandboxState.WARM).get(timeout=5)
    pool.mark(first.sandbox_id, SandboxState.WAITING).get(timeout=5)
    second = session_spec(tmp_path)
    pool.reserve(second, Owner().proxy).get(timeout=10)
    room: Future[None] = pool.room(second.sandbox_id).get(timeout=5)
    assert owner.park_told.wait(10)  # at the cap: the idle one is told to park
    pool.release(first.sandbox_id).get(timeout=5)
    assert launcher.asked.wait(15)  # its bridge is gone ...
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    time.sleep(0.3)
    assert not room.done()  # ... but its teardown is not over: no slot yet
    launcher.torn_down.set()
    room.result(timeout=15)
    pool.stop()


def test_a_sandbox_whose_owner_died_is_released_not_leaked(tmp_path: Path) -> None:
    pool = make_pool(tmp_path, READY_THEN_SLEEP, max_sandboxes=2)
    owner = Owner()
    pid = _bridge_pid(pool.reserve(session_spec(tmp_path), owner.proxy).get(timeout=10))
    assert pool.release_orphans().get(timeout=5) == 0  # its owner lives
    owner.ref.stop(timeout=10)  # the session actor is gone (crashed, or its supervisor did)
    assert pool.release_orphans().get(timeout=5) == 1
    assert pool.stats().get(timeout=5).total == 0
    assert _all_dead([pid])  # the bridge is dead


def test_evicting_for_a_dead_owner_releases_the_sandbox(tmp_path: Path) -> None:
    pool = make_pool(tmp_path, READY_THEN_SLEEP, max_sandboxes=1, sweep_interval_s=3600)
    owner = Owner()
    spec = session_spec(tmp_path)
    pid = _bridge_pid(pool.reserve(spec, owner.proxy).get(timeout=10))
    pool.mark(spec.sandbox_id, SandboxState.WARM).get(timeout=5)
    pool.mark(spec.sandbox_id, SandboxState.WAITING).get(timeout=5)
    owner.ref.stop(timeout=10)
    pool.reserve(session_spec(tmp_path), Owner().proxy).get(timeout=10)  # full: evicts the dead owner's
    assert pool.stats().get(timeout=5).total == 1  # the new one only: the orphan was dropped at once
    assert _all_dead([pid])


def test_a_prewarm_never_parks_a_session_and_is_parked_first_for_one(tmp_path: Path) -> None:
    pool = make_pool(tmp_path, READY_THEN_SLEEP, max_sandboxes=2, sweep_interval_s=3600)
    session, prewarm = Owner(), Owner()
    specs = [session_spec(tmp_path), make_spec(tmp_path)]  # used first: the session
    for spec, owner in zip(specs, (session, prewarm), strict=True):
        _bridge_pid(pool.reserve(spec, owner.proxy).get(timeout=10))
        pool.mark(spec.sandbox_id, SandboxState.WARM).get(timeout=5)
    with pytest.raises(Unavailable, match="pre-warm"):  # another pre-warm at the cap: refused
        pool.reserve(make_spec(tmp_path), Owner().proxy).get(timeout=10)
    assert not session.parked and not prewarm.parked  # nobody lost a CLI for it
    pool.reserve(session_spec(tmp_path), Owner().proxy).get(timeout=10)  # a session's start at the cap
    assert prewarm.park_told.wait(5) and not session.parked  # the unclaimed pre-warm goes, not the older session


def test_a_crashed_pool_stops_every_bridge_then_reports(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.migrate()
    reports: list[str] = []
    reported = threading.Event()

    def crashed(detail: str) -> None:
        reports.append(detail)
        reported.set()

    config = PoolConfig(max_sandboxes=2, bridge_ready_timeout_s=10, stop_grace_s=1)
    ref = PoolActor.start(config, ScriptLauncher(READY_THEN_SLEEP), store, crashed=crashed)  # type: ignore[arg-type]
    pool = ref.proxy()
    specs = [make_spec(tmp_path), make_spec(tmp_path)]
    pids = [_bridge_pid(pool.reserve(spec, Owner().proxy).get(timeout=10)) for spec in specs]
    pool.inject_fault.defer("test")  # a tell: pykka's on_failure path, like a real bug
    assert reported.wait(30), "the pool did not report its crash"
    assert "InjectedFault" in reports[0]
    assert not ref.is_alive()
    assert _all_dead(pids)
    assert {store.get_sandbox(s.sandbox_id).state for s in specs} == {"cold"}  # type: ignore[union-attr]


def test_a_crashed_sandbox_actor_kills_its_bridge_and_the_owner_is_told(tmp_path: Path) -> None:
    pool = make_pool(tmp_path, READY_THEN_SLEEP, max_sandboxes=1)
    owner = Owner()
    sandbox = pool.reserve(make_spec(tmp_path), owner.proxy).get(timeout=10)
    pid = _bridge_pid(sandbox)
    sandbox.inject_fault.defer("test")
    assert owner.lost.wait(15)  # an unexpected exit, as for any crashed bridge
    assert _all_dead([pid])
    assert pool.stats().get(timeout=5).total == 0


def test_the_sweep_parks_idle_active_sessions_but_not_queued_prewarmed_or_paused_ones(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.migrate()
    config = PoolConfig(max_sandboxes=8, bridge_ready_timeout_s=10, stop_grace_s=1, park_after_ms=1000,
                        sweep_interval_s=3600)  # the ticker still sweeps every 0.25 s: park_after_ms / 4
    pool = PoolActor.start(config, ScriptLauncher(READY_THEN_SLEEP), store).proxy()  # type: ignore[arg-type]
    owners = {name: Owner() for name in ("queued", "prewarm", "paused", "plain")}
    specs = {name: make_spec(tmp_path) for name in owners}
    item = store.enqueue(NewItem("t", "agent", "later", session_id=specs["queued"].session_id))
    for name, spec in specs.items():
        if name != "prewarm":  # a pre-warm has no session row yet
            store.create_session("t", spec.session_id, "agent", "paused" if name == "paused" else "active")
        pool.reserve(spec, owners[name].proxy).get(timeout=10).start_bridge().get(timeout=15)
        pool.mark(spec.sandbox_id, SandboxState.WARM).get(timeout=5)
        pool.mark(spec.sandbox_id, SandboxState.WAITING).get(timeout=5)
    idle_since = time.monotonic()

    assert not owners["plain"].parked  # no turn for less than park_after_ms yet
    assert owners["plain"].park_told.wait(5) and time.monotonic() - idle_since >= 0.9
    assert "no turn for 1.0s" in owners["plain"].parked[0][1]
    time.sleep(0.6)  # a few more sweeps
    assert not any(owners[name].parked or owners[name].evicted for name in ("queued", "prewarm", "paused"))

    assert store.cancel_queue_item("t", item.id)  # nothing waits for it any more: it may park now
    assert owners["queued"].park_told.wait(5)


def test_low_host_memory_parks_idle_sessions_least_recently_used_first(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemAvailable:   4194304 kB\n")  # 4 GiB: plenty

    class Pool(PoolActor):
        pass

    Pool.meminfo = meminfo
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.migrate()
    config = PoolConfig(max_sandboxes=8, bridge_ready_timeout_s=10, stop_grace_s=1, park_after_ms=600_000,
                        park_below_available_mb=512, sweep_interval_s=3600)
    pool = Pool.start(config, ScriptLauncher(READY_THEN_SLEEP), store).proxy()  # type: ignore[arg-type]
    owners, specs = [Owner(), Owner(), Owner()], [make_spec(tmp_path) for _ in range(3)]
    for owner, spec in zip(owners, specs, strict=True):
        store.create_session("t", spec.session_id, "agent", "active")
        pool.reserve(spec, owner.proxy).get(timeout=10).start_bridge().get(timeout=15)
        pool.mark(spec.sandbox_id, SandboxState.WARM).get(timeout=5)
        pool.mark(spec.sandbox_id, SandboxState.WAITING).get(timeout=5)
    assert pool.sweep().get(timeout=5) == 0 and not any(o.parked for o in owners)

    meminfo.write_text("MemAvailable:   102400 kB\n")  # 100 MiB: 412 MiB short, two sessions' worth
    assert pool.sweep().get(timeout=5) == 2
    assert owners[0].park_told.wait(5) and owners[1].park_told.wait(5) and not owners[2].parked
    assert owners[0].parked[0][1] == "host memory is low"
    assert "host memory is low (100 MiB available, under pool.park_below_available_mb = 512)" in caplog.text


class QuotaLedger:
    """A data disk with room for ``capacity_mb`` of quotas (DiskLedger's seam: admit)."""

    def __init__(self, capacity_mb: int) -> None:
        self.capacity = capacity_mb << 20
        self.admitted: list[str] = []

    def admit(self, sandbox_id: str, quota_mb: int, pending: dict[str, int], live: object) -> None:
        self.admitted.append(sandbox_id)
        if (quota_mb << 20) + sum(pending.values()) > self.capacity:
            raise InsufficientStorage(f"no room for {sandbox_id}", 60)


def test_a_disk_promise_holds_a_queued_starts_quota_until_it_is_forgotten(tmp_path: Path) -> None:
    """Issue #18: a start's quota is admitted when it queues (promise_disk) and counted for every
    other admission until its start is over (forget_disk); its own reserve admits it no second time."""
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.migrate()
    config = PoolConfig(max_sandboxes=4, bridge_ready_timeout_s=10, stop_grace_s=1)
    ledger = QuotaLedger(250)
    pool = PoolActor.start(config, ScriptLauncher(READY_THEN_SLEEP), store,  # type: ignore[arg-type]
                           disk=ledger, default_disk_mb=100).proxy()
    first, second, third = (session_spec(tmp_path) for _ in range(3))
    pool.promise_disk(first.sandbox_id, first.root, 0).get(timeout=10)
    pool.promise_disk(second.sandbox_id, second.root, 0).get(timeout=10)
    with pytest.raises(InsufficientStorage):  # two promises of 100 MiB: no room for a third
        pool.promise_disk(third.sandbox_id, third.root, 0).get(timeout=10)
    pool.forget_disk(second.sandbox_id).get(timeout=10)  # the queued start was cancelled
    pool.promise_disk(third.sandbox_id, third.root, 0).get(timeout=10)
    admissions = len(ledger.admitted)
    pool.reserve(first, Owner().proxy).get(timeout=10)
    assert len(ledger.admitted) == admissions  # promised: not admitted a second time
    pool.forget_disk(first.sandbox_id).get(timeout=10)  # its start is over; live without an image, it still holds
    with pytest.raises(InsufficientStorage):
        pool.promise_disk(second.sandbox_id, second.root, 0).get(timeout=10)
