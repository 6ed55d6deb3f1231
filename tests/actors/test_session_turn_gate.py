"""A session actor's turn gate (ashd/actors/turn_gate.py) with the real actor, pool and store:
what it offers, and that a turn taken through it is held exactly like an asked one."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil
import pykka
import pytest

from ashd.actors.messages import Pending
from ashd.actors.turn_gate import TurnGates
from ashd.errors import Conflict
from tests.actors.harness import READY, TENANT, ShellLauncher, World, make_world, settle

IDLE_S = 1000.0  # the harness's idle time: timers shorter than this are restart backoffs


@pytest.fixture(autouse=True)
def stop_actors() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all(timeout=30)


def gated_world(tmp_path: Path, **kwargs: Any) -> tuple[World, TurnGates]:
    world = make_world(tmp_path, ShellLauncher(READY), **kwargs)
    gates = TurnGates()
    world.deps = replace(world.deps, turn_gates=gates)
    return world, gates


def running(world: World) -> int:
    return int(world.pool.stats().get(timeout=5).running)


def test_a_warm_idle_session_offers_its_turn_and_a_taken_one_is_held_like_an_asked_one(tmp_path: Path) -> None:
    world, gates = gated_world(tmp_path)
    actor, session_id = world.create()
    offered = gates.take(TENANT, session_id)  # open as soon as the create answered
    assert offered is not None and psutil.pid_exists(offered.grant.pid)
    assert gates.take(TENANT, session_id) is None  # taken: nobody else gets it
    offered.owner.turn_taken().get(timeout=5)
    assert running(world) == 1
    with pytest.raises(Conflict, match="already running"):
        actor.begin_turn().get(timeout=5)  # a concurrent message: 409
    with pytest.raises(Conflict, match="can be paused"):
        actor.pause().get(timeout=5)
    with pytest.raises(Conflict, match="can be stopped"):
        actor.stop_session().get(timeout=5)
    assert actor.hand_over().get(timeout=5) is False
    assert gates.take(TENANT, session_id) is None  # still busy after all those messages
    actor.end_turn().get(timeout=5)  # a turn taken through the gate ends there, not here
    assert gates.take(TENANT, session_id) is None and running(world) == 1
    offered.gate.end()
    again = gates.take(TENANT, session_id)  # lent: the next is taken before the actor heard of the end
    assert again is not None and again.grant.pid == offered.grant.pid  # the same agent process
    with pytest.raises(Conflict, match="can be paused"):
        actor.pause().get(timeout=5)  # the second turn runs
    again.gate.end()
    again.owner.turn_ended().get(timeout=5)
    assert running(world) == 0
    assert settle(actor.pause).status == "paused"
    assert gates.take(TENANT, session_id) is None


def test_a_turn_taken_before_the_actor_heard_of_it_is_collected_by_any_message(tmp_path: Path) -> None:
    world, gates = gated_world(tmp_path)
    actor, session_id = world.create()
    offered = gates.take(TENANT, session_id)
    assert offered is not None
    # No turn_taken yet: the pool's park arrives first. It finds the session busy and lets it be.
    actor.park(offered.grant.sandbox_id, "idle").get(timeout=5)
    actor.evict_snapshotted(offered.grant.sandbox_id, "idle", False).get(timeout=5)
    assert psutil.pid_exists(offered.grant.pid) and world.store.warm_session_ids() == {session_id}
    offered.owner.turn_taken().get(timeout=5)  # idempotent: still one turn
    offered.gate.end()
    offered.owner.turn_ended().get(timeout=5)
    actor.evict_snapshotted(offered.grant.sandbox_id, "idle", False).get(timeout=5)  # idle now: parked
    assert world.store.warm_session_ids() == set()
    assert gates.take(TENANT, session_id) is None  # parked: the next message wakes it (asked)
    assert settle(actor.begin_turn).pid != offered.grant.pid


def test_no_turn_is_offered_for_an_agent_process_known_dead_or_a_stopped_session(tmp_path: Path) -> None:
    world, gates = gated_world(tmp_path)
    actor, session_id = world.create()
    pid = world.launcher.spawned[-1]
    taken = gates.take(TENANT, session_id)
    assert taken is not None
    taken.gate.end()  # (the test took it) back to idle: offered again
    os.kill(pid, signal.SIGKILL)
    assert world.exits.wait(pid, 10) is not None
    actor.holds_sandbox().get(timeout=5)  # any message: the gate is reopened only for a live process
    assert gates.take(TENANT, session_id) is None
    assert isinstance(actor.begin_turn().get(timeout=5), Pending)  # asked: a new one after the backoff
    assert gates.take(TENANT, session_id) is None  # not while it starts
    world.timers.fire(IDLE_S)
    assert settle(actor.begin_turn).pid != pid
    actor.end_turn().get(timeout=5)
    assert settle(actor.stop_session).status == "stopped"
    assert gates.take(TENANT, session_id) is None


def test_a_stopped_actor_takes_its_gate_away(tmp_path: Path) -> None:
    world, gates = gated_world(tmp_path)
    actor, session_id = world.create()
    actor.actor_ref.stop(timeout=10)
    assert gates.take(TENANT, session_id) is None
