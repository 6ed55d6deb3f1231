"""The readiness/watchdog probe asks the real actors: a stuck pool means no answer in time."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pykka
import pytest

from ashd.actors.children import ChildRegistry
from ashd.actors.exits import ExitBoard
from ashd.actors.figures import tree_answers
from ashd.actors.supervisor import Tree


class Pool(pykka.ThreadingActor):
    def __init__(self, gate: threading.Event) -> None:
        super().__init__()
        self.gate = gate

    def stats(self) -> None:
        self.gate.wait(60)  # stuck until the test opens the gate


class Sessions(pykka.ThreadingActor):
    prewarm_hits = 0


@pytest.fixture
def tree() -> Iterator[tuple[Tree, threading.Event, list[pykka.ActorRef[Any]]]]:
    gate = threading.Event()
    pool, sessions = Pool.start(gate), Sessions.start()
    registry = ChildRegistry()
    registry.put("pool", pool)
    registry.put("sessions", sessions)
    yield Tree(registry, ExitBoard()), gate, [pool, sessions]
    gate.set()
    for ref in (pool, sessions):
        ref.stop(block=False)


Fixture = tuple[Tree, threading.Event, list[pykka.ActorRef[Any]]]


def test_a_stuck_pool_does_not_answer_and_a_free_one_does(tree: Fixture) -> None:
    actors, gate, _ = tree
    assert tree_answers(actors, timeout_s=0.2) is False
    gate.set()
    assert tree_answers(actors, timeout_s=30) is True


def test_a_stopped_tree_does_not_answer(tree: Fixture) -> None:
    actors, gate, refs = tree
    gate.set()
    for ref in refs:
        ref.stop(timeout=30)
    assert tree_answers(actors, timeout_s=5) is False


def test_a_tree_that_gave_up_does_not_answer(tree: Fixture) -> None:
    actors, gate, _ = tree
    gate.set()
    actors.supervision.give_up("pool crashed too often")
    assert tree_answers(actors, timeout_s=30) is False
