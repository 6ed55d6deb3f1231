"""TurnGate alone: a turn offered, taken once, and reported by the shutting that follows."""

from __future__ import annotations

import threading

import pytest

from ashd.actors.messages import TurnGrant
from ashd.actors.turn_gate import OpenTurn, TurnGate, TurnGates

OWNER = object()


def offered(tenant: str = "t1", pid: int = 100) -> OpenTurn:
    return OpenTurn(TurnGrant(tenant, "s1", "s1", "/run/s1.sock", pid), OWNER)


def test_an_open_gate_is_taken_once_and_the_shutting_reports_the_taken_turn() -> None:
    gate, turn = TurnGate(), offered()
    assert gate.take("t1") is None  # shut until the actor opens it
    gate.open(turn)
    assert gate.take("t1") is turn
    assert gate.take("t1") is None  # one turn at a time
    assert gate.close() is turn  # the actor now holds it as begun
    assert gate.close() is None and gate.take("t1") is None


def test_a_gate_shut_before_anyone_took_it_reports_nothing_and_reopens() -> None:
    gate = TurnGate()
    gate.open(offered(pid=1))
    assert gate.close() is None
    assert gate.take("t1") is None
    gate.open(offered(pid=2))
    taken = gate.take("t1")
    assert taken is not None and taken.grant.pid == 2


def test_another_tenants_turn_is_never_taken() -> None:
    gate = TurnGate()
    gate.open(offered("t1"))
    assert gate.take("t2") is None
    assert gate.close() is None  # still offered to t1 until shut, never taken


def test_a_taken_turn_must_be_collected_before_the_gate_reopens() -> None:
    gate = TurnGate()
    gate.open(offered())
    gate.take("t1")
    with pytest.raises(RuntimeError):
        gate.open(offered())


def race(gate: TurnGate, takers: int) -> tuple[list[OpenTurn], list[OpenTurn | None]]:
    """``takers`` threads take while one shuts, all released at once: what each side got."""
    start = threading.Barrier(takers + 1)
    won: list[OpenTurn] = []
    shut: list[OpenTurn | None] = []

    def taker() -> None:
        start.wait()
        got = gate.take("t1")
        if got is not None:
            won.append(got)

    def actor() -> None:
        start.wait()
        shut.append(gate.close())

    threads = [threading.Thread(target=taker) for _ in range(takers)] + [threading.Thread(target=actor)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return won, shut


def test_racing_takers_and_a_shutting_actor_agree_on_who_has_the_turn() -> None:
    """Many rounds: several threads take while the actor shuts; either exactly one taker won
    and the shutting reports its turn, or nobody took it and the shutting reports none."""
    gate = TurnGate()
    for _ in range(300):
        turn = offered()
        gate.open(turn)
        won, shut = race(gate, takers=4)
        late = gate.close()  # a take after the actor's shutting finds it shut
        assert late is None
        assert len(won) <= 1
        assert shut == ([turn] if won else [None])


def test_the_registry_takes_through_the_current_actors_gate_until_the_daemon_stops() -> None:
    gates, old, new = TurnGates(), TurnGate(), TurnGate()
    gates.put("s1", old)
    gates.put("s1", new)  # a new actor of the session
    gates.remove("s1", old)  # the old one's stop does not take the new one's gate out
    new.open(offered())
    assert gates.take("t1", "s2") is None
    assert gates.take("t1", "s1") is not None
    new.close()
    new.open(offered())
    gates.shut_all()
    assert gates.take("t1", "s1") is None
    gates.remove("s1", new)
