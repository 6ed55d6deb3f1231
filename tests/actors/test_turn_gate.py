"""TurnGate alone: a turn offered, taken once at a time, and reported by the shutting that follows."""

from __future__ import annotations

import threading

from ashd.actors.messages import TurnGrant
from ashd.actors.turn_gate import GateNews, OpenTurn, TurnGate, TurnGates

OWNER = object()


def grant(tenant: str = "t1", pid: int = 100) -> TurnGrant:
    return TurnGrant(tenant, "s1", "s1", "/run/s1.sock", pid)


def test_an_open_gate_is_taken_once_and_the_shutting_reports_the_taken_turn() -> None:
    gate = TurnGate()
    assert gate.take("t1") is None  # shut until the actor opens it
    gate.open(grant(), OWNER)
    turn = gate.take("t1")
    assert turn is not None and turn.grant == grant() and turn.owner is OWNER and turn.gate is gate
    assert gate.take("t1") is None  # one turn at a time
    assert gate.close() == GateNews(taken=1, ended=0, running=True)  # the actor now holds it as begun
    assert gate.close() == GateNews(0, 0, True) and gate.close().none
    assert gate.take("t1") is None  # shut


def test_a_lent_gate_gives_the_next_turn_as_soon_as_the_last_one_ended() -> None:
    gate = TurnGate()
    gate.open(grant(), OWNER)
    assert gate.take("t1") is not None
    gate.close()
    gate.open(grant(), OWNER)  # the actor lends the session to the runtime's turns
    assert gate.take("t1") is None  # the first still runs
    gate.end()
    gate.end()  # idempotent
    assert gate.take("t1") is not None  # without the actor hearing of the end first
    assert gate.close() == GateNews(taken=1, ended=1, running=True)
    assert gate.take("t1") is None
    gate.end()
    assert gate.close() == GateNews(taken=0, ended=1, running=False)


def test_a_gate_shut_before_anyone_took_it_reports_nothing_and_reopens() -> None:
    gate = TurnGate()
    gate.open(grant(pid=1), OWNER)
    assert gate.close().none
    assert gate.take("t1") is None
    gate.open(grant(pid=2), OWNER)
    taken = gate.take("t1")
    assert taken is not None and taken.grant.pid == 2


def test_another_tenants_turn_is_never_taken() -> None:
    gate = TurnGate()
    gate.open(grant("t1"), OWNER)
    assert gate.take("t2") is None
    assert gate.close().none


def race(gate: TurnGate, takers: int) -> tuple[list[OpenTurn], list[GateNews]]:
    """``takers`` threads take while one shuts, all released at once: what each side got."""
    start = threading.Barrier(takers + 1)
    won: list[OpenTurn] = []
    shut: list[GateNews] = []

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
    and the shutting or the next one reports its turn, or nobody took it."""
    gate = TurnGate()
    for _ in range(300):
        gate.open(grant(), OWNER)
        won, shut = race(gate, takers=4)
        late = gate.close()  # a take after the actor's shutting finds it shut
        assert len(won) <= 1
        assert shut[0].taken + late.taken == len(won)
        assert late.running == bool(won)
        gate.end()
        assert gate.close().ended == len(won)


def test_the_registry_takes_through_the_current_actors_gate_until_the_daemon_stops() -> None:
    gates, old, new = TurnGates(), TurnGate(), TurnGate()
    gates.put("s1", old)
    gates.put("s1", new)  # a new actor of the session
    gates.remove("s1", old)  # the old one's stop does not take the new one's gate out
    new.open(grant(), OWNER)
    assert gates.take("t1", "s2") is None
    taken = gates.take("t1", "s1")
    assert taken is not None and taken.gate is new
    new.end()
    gates.shut_all()
    assert gates.take("t1", "s1") is None
    gates.remove("s1", new)
