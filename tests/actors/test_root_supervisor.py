"""RootSupervisor: ordered start with a ping barrier, reverse stop, rest_for_one restarts under
the restart policy (fake clock), and giving up (ashd then exits non-zero)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import pykka
import pytest

from ashd.actors.children import ChildRegistry, ChildSpec, Crashed, SupervisionRecord, actor_ping, actor_stop
from ashd.actors.faults import FaultTarget, crash_detail
from ashd.actors.root import ChildStartFailed, RootSupervisor, TreePolicy
from ashd.config import SupervisionConfig
from ashd.errors import Unavailable
from ashd.policy import Escalate, GiveUp, ManualClock, Restart

FAST = SupervisionConfig(backoff_base_s=0.01, backoff_cap_s=0.02, tree_intensity=3, tree_period_s=60,
                         tree_budget_limit=5)


class Child(FaultTarget, pykka.ThreadingActor):
    def __init__(self, name: str, events: list[str], crashed: Crashed) -> None:
        super().__init__()
        self.name, self.events, self.crashed = name, events, crashed

    def ping(self) -> str:
        self.events.append(f"ping {self.name}")
        return self.name

    def on_stop(self) -> None:
        self.events.append(f"stop {self.name}")

    def on_failure(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                   tb: TracebackType | None) -> None:
        self.events.append(f"crash {self.name}")
        self.crashed(crash_detail(exc))


def child(name: str, events: list[str], restartable: bool = True, answers: bool = True) -> ChildSpec:
    def start(crashed: Crashed) -> pykka.ActorRef[Child]:
        events.append(f"start {name}")
        return Child.start(name, events, crashed)

    ping = actor_ping(lambda proxy: proxy.ping()) if answers else (lambda ref, timeout: False)
    return ChildSpec(name, start, ping, actor_stop, restartable)


RIGS: list[Rig] = []


class Rig:
    def __init__(self, *specs: ChildSpec, config: SupervisionConfig = FAST) -> None:
        RIGS.append(self)
        self.registry = ChildRegistry()
        self.record = SupervisionRecord()
        self.clock = ManualClock()
        self.gave_up: list[str] = []
        self.gave_up_event = threading.Event()

        def on_give_up(reason: str) -> None:
            self.gave_up.append(reason)
            self.gave_up_event.set()

        self.root = RootSupervisor.start(list(specs), self.registry, self.record,
                                         TreePolicy.from_config(config, clock=self.clock), on_give_up)

    def start(self) -> None:
        self.root.proxy().start_children().get(timeout=30)

    def ref(self, name: str) -> pykka.ActorRef[Any]:
        ref: pykka.ActorRef[Any] = self.registry.get(name)
        return ref

    def crash(self, name: str) -> pykka.ActorRef[Any]:
        """Crash the current ``name`` through a tell (pykka's on_failure path); returns it."""
        deadline = time.monotonic() + 10
        while True:
            ref = self.ref(name)
            try:
                ref.proxy().inject_fault.defer("test")
                return ref
            except pykka.ActorDeadError:  # being replaced right now: crash the new one
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def wait_replaced(self, name: str, old: pykka.ActorRef[Any], timeout_s: float = 10) -> pykka.ActorRef[Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ref = self.ref(name)
            if ref is not None and ref is not old and ref.is_alive():
                self.root.proxy().actor_urn.get(timeout=10)  # the root finished that restart
                return ref
            time.sleep(0.01)
        raise AssertionError(f"{name} was not restarted")


@pytest.fixture(autouse=True)
def stop_actors() -> Iterator[None]:
    yield
    while RIGS:  # the root first: it stops its children in reverse, as in ashd
        RIGS.pop().root.stop(timeout=30)
    pykka.ActorRegistry.stop_all(timeout=30)


def test_children_start_in_order_each_after_its_ping_and_stop_in_reverse() -> None:
    events: list[str] = []
    rig = Rig(child("a", events), child("b", events), child("c", events, restartable=False))
    rig.start()
    assert events == ["start a", "ping a", "start b", "ping b", "start c", "ping c"]
    rig.root.stop(timeout=30)
    assert events[6:] == ["stop c", "stop b", "stop a"]


def test_a_child_that_does_not_answer_fails_the_start_and_the_started_ones_stop() -> None:
    events: list[str] = []
    rig = Rig(child("a", events), child("b", events, answers=False), child("c", events))
    with pytest.raises(ChildStartFailed, match="b did not answer a ping"):
        rig.start()
    assert "start c" not in events
    assert events[-2:] == ["stop b", "stop a"]


def test_a_crash_restarts_that_child_and_the_restartable_ones_after_it() -> None:
    events: list[str] = []
    rig = Rig(child("a", events), child("b", events), child("http", events, restartable=False))
    rig.start()
    http = rig.ref("http")
    old_a, old_b = rig.crash("a"), rig.ref("b")
    new_a = rig.wait_replaced("a", old_a)
    new_b = rig.wait_replaced("b", old_b)
    assert not old_a.is_alive() and not old_b.is_alive()  # a restart is a new actor
    assert new_a.is_alive() and new_b.is_alive()
    assert rig.ref("http") is http and http.is_alive()  # not restartable: left running
    after = events[events.index("crash a"):]
    assert after == ["crash a", "stop b", "start a", "ping a", "start b", "ping b"]
    assert rig.record.to_json()["restarts"] == {"pool": 0, "sessions": 0, "session": 0, "a": 1, "b": 1}


def test_a_crash_of_the_last_restartable_child_restarts_it_alone() -> None:
    events: list[str] = []
    rig = Rig(child("a", events), child("b", events))
    rig.start()
    a = rig.ref("a")
    rig.wait_replaced("b", rig.crash("b"))
    assert rig.ref("a") is a and a.is_alive()
    assert rig.record.to_json()["failedChildren"] == [] and rig.gave_up == []


def test_the_registry_names_the_new_actor_and_is_unavailable_in_between() -> None:
    registry = ChildRegistry()
    with pytest.raises(Unavailable, match="restarting"):
        registry.proxy("pool")
    events: list[str] = []
    ref = Child.start("p", events, lambda detail: None)
    registry.put("pool", ref)
    assert registry.proxy("pool").ping().get(timeout=5) == "p"
    ref.stop(timeout=5)
    with pytest.raises(Unavailable):
        registry.proxy("pool")


def test_intensity_exceeded_gives_up_and_asks_ashd_to_exit() -> None:
    events: list[str] = []
    rig = Rig(child("a", events), child("b", events))
    rig.start()
    for _ in range(3):  # three restarts within the period are allowed
        rig.wait_replaced("a", rig.crash("a"))
        rig.clock.advance(1)
    rig.crash("a")  # the fourth crash within 60 s
    assert rig.gave_up_event.wait(10)
    assert "a crashed too often" in rig.gave_up[0] and "exited 4 times in 60s" in rig.gave_up[0]
    status = rig.record.to_json()
    assert status["failedChildren"][0]["child"] == "a" and status["gaveUp"] == rig.gave_up[0]
    assert status["restarts"]["a"] == 3


def test_crashes_spread_beyond_the_period_never_give_up() -> None:
    events: list[str] = []
    rig = Rig(child("a", events), config=SupervisionConfig(backoff_base_s=0.01, backoff_cap_s=0.02,
                                                            tree_intensity=1, tree_period_s=10))
    rig.start()
    for _ in range(4):
        rig.wait_replaced("a", rig.crash("a"))
        rig.clock.advance(11)  # each crash alone in its window
    assert rig.gave_up == [] and rig.record.to_json()["restarts"]["a"] == 4


def test_tree_policy_decisions_with_a_fake_clock() -> None:
    clock = ManualClock()
    policy = TreePolicy.from_config(SupervisionConfig(tree_intensity=2, tree_period_s=60, tree_budget_limit=3),
                                    clock=clock)
    policy.started("pool")
    assert isinstance(policy.crashed("pool", "boom"), Restart)
    assert isinstance(policy.crashed("pool", "boom"), Restart)
    decision = policy.crashed("pool", "boom")
    assert isinstance(decision, GiveUp) and "pool: boom" in decision.reason
    # The root's budget counts every child's restarts: a third child restart escalates.
    policy.started("sessions")
    assert isinstance(policy.crashed("sessions", "x"), Restart)
    assert isinstance(policy.crashed("other", "x"), Escalate)
    clock.advance(61)  # the window passed: room again
    assert isinstance(policy.crashed("other", "x"), Restart)


def test_a_budget_spent_by_several_children_escalates_to_giving_up() -> None:
    events: list[str] = []
    config = SupervisionConfig(backoff_base_s=0.01, backoff_cap_s=0.02, tree_intensity=5, tree_budget_limit=2)
    rig = Rig(child("a", events), child("b", events), config=config)
    rig.start()
    rig.wait_replaced("b", rig.crash("b"))
    b = rig.ref("b")
    rig.wait_replaced("a", rig.crash("a"))  # restarts b with it; the budget counts crashes: 2 of 2
    rig.wait_replaced("b", b)
    rig.crash("b")
    assert rig.gave_up_event.wait(10)
    assert "restart budget spent" in rig.gave_up[0]

