"""SessionActor on its own: real actors and store, fakes at the seams (tests/actors/harness.py)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil
import pykka
import pytest

from ashd.actors.messages import BridgeExited, Pending, TurnGrant
from ashd.actors.start_gate import StartGate
from ashd.errors import BadRequest, Conflict, SandboxFailed
from ashd.options import SessionOptions
from ashd.snapshot.snapshots import SnapshotInfo
from tests.actors.harness import DIE_AT_START, READY, TENANT, ShellLauncher, World, make_world, ready_after, settle

IDLE_S = 1000.0  # the harness's idle time: timers shorter than this are restart backoffs


@pytest.fixture(autouse=True)
def stop_actors() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all(timeout=30)


def status(world: World, session_id: str) -> tuple[str, str | None]:
    row = world.store.get_session(TENANT, session_id)
    assert row is not None
    return row.status, row.status_reason


def gone(pid: int, timeout: float = 10.0) -> bool:
    try:
        psutil.Process(pid).wait(timeout)
    except psutil.NoSuchProcess:
        pass
    except psutil.TimeoutExpired:
        return False
    return True


def wait_for(condition: object, timeout: float = 10.0) -> bool:
    """Poll a condition a background thread makes true (a timer or a worker's result)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


def start_pending(actor: Any, world: Any) -> Pending:
    """A create's Pending for its start (``begun`` set): the first answer may instead wait for
    the start queue's word (a start promises its disk first), which the repeat then has."""
    first = actor.create(world.agent, SessionOptions()).get(timeout=5)
    assert isinstance(first, Pending)
    if first.begun is None:
        first.until.result(timeout=15)
        first = actor.create(world.agent, SessionOptions()).get(timeout=5)
        assert isinstance(first, Pending) and first.begun is not None
    return first


def test_create_answers_pending_while_the_bridge_starts_and_the_mailbox_stays_free(tmp_path: Path) -> None:
    gate = tmp_path / "ready"
    world = make_world(tmp_path, ShellLauncher(ready_after(gate)))
    actor = world.session("11111111-1111-1111-1111-111111111111")
    first = start_pending(actor, world)
    assert not first.until.done()
    assert status(world, "11111111-1111-1111-1111-111111111111") == ("starting", None)
    again = actor.begin_turn()  # answered at once, not after the start: the same Pending
    with pytest.raises(BadRequest, match="starting"):
        again.get(timeout=2)
    repeat = actor.create(world.agent, SessionOptions()).get(timeout=2)
    assert isinstance(repeat, Pending) and repeat.until is first.until  # one start, not two
    gate.touch()
    first.until.result(timeout=15)
    row = settle(lambda: actor.create(world.agent, SessionOptions()))
    assert row.status == "active" and len(world.launcher.spawned) == 1


def test_turn_gate_one_turn_at_a_time(tmp_path: Path) -> None:
    world = make_world(tmp_path, ShellLauncher(READY))
    actor, session_id = world.create()
    assert status(world, session_id) == ("active", None)
    grant = settle(actor.begin_turn)
    assert isinstance(grant, TurnGrant) and psutil.pid_exists(grant.pid)
    with pytest.raises(Conflict, match="already running"):
        actor.begin_turn().get(timeout=5)
    with pytest.raises(Conflict, match="can be paused"):
        actor.pause().get(timeout=5)
    actor.end_turn().get(timeout=5)
    assert settle(actor.begin_turn).pid == grant.pid  # the same agent process serves the next turn


class GatedSnapshots:
    """A snapshot store that takes as long as the test wants."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started = threading.Event()

    def save(self, session_id: str, tenant_id: str, workspace: Path) -> SnapshotInfo:
        self.started.set()
        assert self.gate.wait(30)
        return SnapshotInfo("k", 1, 1, 1.0)

    def restore(self, session_id: str, tenant_id: str, target: Path) -> bool:
        return False


def test_begin_turn_right_after_done_never_waits_for_the_snapshot(tmp_path: Path) -> None:
    snaps = GatedSnapshots()
    world = make_world(tmp_path, ShellLauncher(READY), snapshots=snaps, worker_digest=lambda ws: None)
    actor, _ = world.create()
    settle(actor.begin_turn)
    actor.end_turn().get(timeout=5)
    assert snaps.started.wait(10)  # the per-turn snapshot is running, and stays stuck
    began = time.monotonic()
    grant = actor.begin_turn().get(timeout=5)
    assert isinstance(grant, TurnGrant) and time.monotonic() - began < 1.0
    actor.end_turn().get(timeout=5)
    paused = actor.pause().get(timeout=5)  # a pause needs its snapshot complete: Pending, not a wait
    assert isinstance(paused, Pending) and not paused.until.done()
    snaps.gate.set()
    assert settle(actor.pause).status == "paused"


def test_a_crash_is_judged_at_once_and_restarted_after_a_backoff_by_timer(tmp_path: Path) -> None:
    world = make_world(tmp_path, ShellLauncher(READY))
    actor, session_id = world.create()
    grant = settle(actor.begin_turn)
    actor.end_turn().get(timeout=5)
    os.kill(grant.pid, signal.SIGKILL)  # the agent process dies between turns
    assert world.exits.wait(grant.pid, 10) is not None
    reply = actor.begin_turn().get(timeout=5)  # before the pool's word: judged right here
    assert isinstance(reply, Pending) and not reply.until.done()
    second = actor.begin_turn().get(timeout=5)  # a second message meanwhile: the same start
    assert isinstance(second, Pending) and second.until is reply.until
    backoffs = world.timers.pending(IDLE_S)
    assert len(backoffs) == 1 and 0.2 <= backoffs[0] <= 0.4  # the first restart's backoff, on a timer
    assert actor.exec_target  # the mailbox answers during the backoff:
    with pytest.raises(Conflict, match="no running sandbox"):
        actor.exec_target().get(timeout=2)
    assert world.timers.fire(IDLE_S) == 1
    reply.until.result(timeout=15)
    again = settle(actor.begin_turn)
    assert again.pid != grant.pid and status(world, session_id) == ("active", None)
    assert len(world.launcher.spawned) == 2  # one start for both messages
    assert world.deps.metrics.agent_crashes._value.get() == 1


def test_a_start_that_keeps_failing_gives_up_into_error(tmp_path: Path) -> None:
    world = make_world(tmp_path, ShellLauncher(DIE_AT_START))
    actor = world.session()
    first = start_pending(actor, world)
    fired = 0
    while not first.until.done():  # each failed attempt schedules the next on a timer
        assert wait_for(lambda: first.until.done() or world.timers.pending(IDLE_S), 15)
        fired += world.timers.fire(IDLE_S)
    assert fired == 3  # intensity 3: the 4th failure gives up
    with pytest.raises(SandboxFailed, match=r"exited 4 times in 60s.*boom: missing thing"):
        actor.create(world.agent, SessionOptions()).get(timeout=5)
    rows = world.store.list_sessions(TENANT, None, None)
    assert [r.status for r in rows] == ["error"] and "exited 4 times" in (rows[0].status_reason or "")
    assert len(world.launcher.spawned) == 4


def test_pause_and_resume_warm_then_stop_and_resume_cold(tmp_path: Path) -> None:
    world = make_world(tmp_path, ShellLauncher(READY))
    actor, session_id = world.create()
    pid = settle(actor.begin_turn).pid
    ws = tmp_path / "data" / "sandboxes" / session_id / "workspace"
    (ws / "made.txt").write_text("by the agent")
    actor.end_turn().get(timeout=5)
    assert settle(actor.pause).status == "paused"
    assert settle(actor.resume).status == "active"  # warm: the same process
    assert settle(actor.begin_turn).pid == pid
    actor.end_turn().get(timeout=5)
    assert settle(actor.stop_session).status == "stopped"
    assert gone(pid)
    assert (tmp_path / "snapshots" / TENANT / session_id / "workspace.tar.gz").exists()
    assert settle(actor.resume).status == "active"  # cold: a new process, files kept
    assert settle(actor.begin_turn).pid != pid and (ws / "made.txt").read_text() == "by the agent"
    resumes = world.deps.metrics.resumes
    assert resumes.labels("warm")._value.get() == 1 and resumes.labels("cold")._value.get() == 1


def test_stop_during_a_start_waits_for_it_and_leaks_no_bridge(tmp_path: Path) -> None:
    gate = tmp_path / "ready"
    world = make_world(tmp_path, ShellLauncher(ready_after(gate)))
    actor = world.session()
    created = actor.create(world.agent, SessionOptions()).get(timeout=5)
    assert wait_for(lambda: world.launcher.spawned)
    stopping = actor.stop_session().get(timeout=5)
    assert isinstance(stopping, Pending)  # the attempt runs: the stop waits for it, off the mailbox
    gate.touch()
    row = settle(actor.stop_session)
    assert row.status == "stopped" and created.until.done()
    assert gone(world.launcher.spawned[0])  # the bridge that became ready anyway was stopped
    assert wait_for(lambda: world.pool.stats().get(timeout=5).total == 0)
    assert settle(lambda: actor.create(world.agent, SessionOptions())).status == "stopped"


def test_end_during_a_backoff_cancels_the_start_at_once(tmp_path: Path) -> None:
    world = make_world(tmp_path, ShellLauncher(DIE_AT_START))
    actor = world.session()
    created = actor.create(world.agent, SessionOptions()).get(timeout=5)
    assert wait_for(lambda: world.timers.pending(IDLE_S))  # the first attempt failed; a backoff runs
    ended = actor.end_session().get(timeout=5)
    assert not isinstance(ended, Pending) and ended.status == "ended"
    assert created.until.done() and world.timers.pending(IDLE_S) == []
    assert len(world.launcher.spawned) == 1


def test_at_capacity_the_pool_parks_an_idle_session_which_snapshots_and_stays_active(tmp_path: Path) -> None:
    world = make_world(tmp_path, ShellLauncher(READY), max_sandboxes=1)
    first, first_id = world.create()
    pid = settle(first.begin_turn).pid
    first.end_turn().get(timeout=5)
    _second, second_id = world.create()  # the pool is full: the idle first one makes room
    assert status(world, second_id) == ("active", None)
    # The second's start waited until the first (parked: snapshot on the worker, then let go) was gone.
    assert gone(pid)
    assert status(world, first_id) == ("active", None)  # parked, not paused: clients see no change
    assert world.store.warm_session_ids() == {second_id}
    assert (tmp_path / "snapshots" / TENANT / first_id / "workspace.tar.gz").exists()


def test_a_running_turn_is_never_evicted(tmp_path: Path) -> None:
    world = make_world(tmp_path, ShellLauncher(READY), max_sandboxes=1)
    first, first_id = world.create()
    settle(first.begin_turn)
    with pytest.raises(Exception, match="running turns"):
        world.create()
    assert status(world, first_id) == ("active", None)


def test_an_idle_actor_stops_and_a_busy_one_does_not(tmp_path: Path) -> None:
    world = make_world(tmp_path, ShellLauncher(READY), idle_s=60)
    live, _ = world.create()
    stopped, stopped_id = world.create()
    assert settle(stopped.stop_session).status == "stopped"
    world.clock.advance(61)
    world.timers.fire(61)
    assert wait_for(lambda: not stopped.actor_ref.is_alive())
    assert live.actor_ref.is_alive()  # it has a sandbox: it stays
    assert status(world, stopped_id)[0] == "stopped"  # nothing lost: the store has it all
    again = world.session(stopped_id)
    assert settle(again.resume).status == "active"


def test_a_message_right_after_a_crash_cold_starts_from_the_exit_board_alone(tmp_path: Path) -> None:
    world = make_world(tmp_path, ShellLauncher(READY))
    actor, _ = world.create()
    grant = settle(actor.begin_turn)
    actor.end_turn().get(timeout=5)
    # The exit is on the board (the watcher records it first); the pool's word has not come.
    world.exits.record(grant.pid, BridgeExited(grant.sandbox_id, grant.session_id, -9, False, "killed"))
    reply = actor.begin_turn().get(timeout=5)
    assert isinstance(reply, Pending)  # no grant for a dead sandbox: a new start, after a backoff
    assert gone(grant.pid)  # what was left of it is released
    world.timers.fire(IDLE_S)
    assert settle(actor.begin_turn).pid != grant.pid


def test_a_create_queued_behind_another_start_answers_active_and_its_first_message_waits(tmp_path: Path) -> None:
    hold = tmp_path / "ready"
    world = make_world(tmp_path, ShellLauncher(ready_after(hold)))
    world.deps = replace(world.deps, gate=StartGate(1, 10, spare=0))  # one start at a time
    running, queued = world.session(), world.session()
    first = running.create(world.agent, SessionOptions()).get(timeout=5)
    assert isinstance(first, Pending)  # it runs: this create waits for its start
    assert wait_for(lambda: world.launcher.spawned)
    row = settle(lambda: queued.create(world.agent, SessionOptions()), timeout=10)
    assert row.status == "active"  # queued behind the other start: answered at once
    assert len(world.launcher.spawned) == 1  # its CLI is not started yet
    turn = queued.begin_turn().get(timeout=5)
    assert isinstance(turn, Pending) and not turn.until.done()  # the first message waits for it
    hold.touch()
    assert settle(lambda: running.create(world.agent, SessionOptions())).status == "active"
    assert settle(running.begin_turn).pid == world.launcher.spawned[0]
    grant = settle(queued.begin_turn)
    assert isinstance(grant, TurnGrant) and len(world.launcher.spawned) == 2
    assert world.deps.metrics.wakes._value.get() == 0  # a first start, not a wake


def test_a_create_whose_start_was_only_slow_answers_active_when_it_is_retried(tmp_path: Path) -> None:
    world = make_world(tmp_path, ShellLauncher("exec sleep 600", READY))  # never ready, then ready
    world.deps = replace(world.deps, ready_timeout_s=0.5)
    actor = world.session()
    first = actor.create(world.agent, SessionOptions()).get(timeout=5)
    assert isinstance(first, Pending)
    assert wait_for(lambda: world.timers.pending(IDLE_S), 30)  # timed out: a retry after a backoff
    row = settle(lambda: actor.create(world.agent, SessionOptions()), timeout=10)
    assert row.status == "active"  # answered without waiting for the retry
    world.timers.fire(IDLE_S)
    assert isinstance(settle(actor.begin_turn), TurnGrant)  # the first message waited for it
    assert world.deps.restarts.budget_spent(TENANT) is False  # slow is not a crash
