"""ashd/actors/start_gate.py: at most N starts at once, round robin per tenant, a bounded queue."""

from __future__ import annotations

import threading

import pytest

from ashd.actors.start_gate import StartGate, StartQueue, Ticket
from ashd.errors import Unavailable
from ashd.policy import ManualClock


def ticket(tenant: str, n: int = 0) -> Ticket:
    return Ticket(tenant, f"{tenant}-{n}", 0.0)


def test_starts_run_up_to_the_slots_then_queue() -> None:
    queue = StartQueue(slots=2, max_queued=10)
    assert queue.offer(ticket("a", 1)) and queue.offer(ticket("a", 2))
    assert not queue.offer(ticket("a", 3))
    assert (queue.running, queue.queued) == (2, 1)


def test_a_full_queue_refuses_at_once_with_a_retry_hint() -> None:
    queue = StartQueue(slots=1, max_queued=1)
    assert queue.offer(ticket("a", 1)) and not queue.offer(ticket("a", 2))
    with pytest.raises(Unavailable) as refused:
        queue.offer(ticket("a", 3))
    assert refused.value.status == 503 and refused.value.retry_after_s >= 1
    assert "pool.max_queued_starts 1" in refused.value.message


def test_a_burst_that_filled_the_queue_leaves_each_other_tenant_its_fair_share() -> None:
    queue = StartQueue(slots=1, max_queued=6, spare=0)
    assert queue.offer(ticket("busy", 0))
    for n in range(1, 7):
        assert not queue.offer(ticket("busy", n))  # the burst fills the whole bound
    with pytest.raises(Unavailable):
        queue.offer(ticket("busy", 7))
    # Another tenant's share is 6 // 2 = 3 waiting starts, though the queue is full.
    for n in range(3):
        assert not queue.offer(ticket("quiet", n))
    with pytest.raises(Unavailable) as refused:
        queue.offer(ticket("quiet", 3))
    assert "fair share" in refused.value.message and "shared by 2 tenants" in refused.value.message
    # A third tenant's share is 6 // 3 = 2; the burst is still refused, holding more than its share.
    assert not queue.offer(ticket("third", 0)) and not queue.offer(ticket("third", 1))
    with pytest.raises(Unavailable):
        queue.offer(ticket("third", 2))
    with pytest.raises(Unavailable):
        queue.offer(ticket("busy", 8))
    assert queue.queued == 11 <= 2 * queue.max_queued


def test_the_queue_never_holds_more_than_twice_its_bound() -> None:
    queue = StartQueue(slots=1, max_queued=2, spare=0)
    assert queue.offer(ticket("t0"))
    offered = 0
    for n in range(50):
        try:
            queue.offer(ticket(f"t{n}"))
            offered += 1
        except Unavailable:
            pass
    assert queue.queued == offered == 4


def test_waiting_starts_are_served_round_robin_across_tenants_fifo_within_one() -> None:
    queue = StartQueue(slots=1, max_queued=100, spare=0)
    running = ticket("busy", 0)
    assert queue.offer(running)
    burst = [ticket("busy", n) for n in range(1, 6)]
    for t in burst:
        assert not queue.offer(t)
    late = [ticket("quiet", 1), ticket("other", 1)]
    for t in late:
        assert not queue.offer(t)
    served = []
    while (nxt := queue.release(running)) is not None:
        served.append(nxt.what)
        running = nxt
    # The quiet tenants' one start each comes second and third, not after the whole burst.
    assert served == ["busy-1", "quiet-1", "other-1", "busy-2", "busy-3", "busy-4", "busy-5"]
    assert queue.running == 0 and queue.queued == 0


def test_a_freed_slot_is_not_taken_past_a_waiting_start() -> None:
    queue = StartQueue(slots=1, max_queued=10, spare=0)
    first = ticket("a", 1)
    assert queue.offer(first) and not queue.offer(ticket("b", 1))
    following = queue.release(first)
    assert following is not None and following.what == "b-1" and queue.running == 1
    assert not queue.offer(ticket("c", 1))  # b holds the slot now


def test_a_tenant_with_nothing_running_takes_the_spare_slot_past_a_burst() -> None:
    queue = StartQueue(slots=2, max_queued=100, spare=1)
    burst = [ticket("busy", n) for n in range(6)]
    assert [queue.offer(t) for t in burst] == [True, True, False, False, False, False]
    quiet = ticket("quiet", 1)
    assert queue.offer(quiet)  # runs at once: the spare slot
    assert queue.running == 3 and quiet.spare and not any(t.spare for t in burst)
    assert not queue.offer(ticket("third", 1))  # the spare is taken: it waits its round robin turn
    assert not queue.offer(ticket("quiet", 2))  # one of quiet's runs: its next start waits too
    # Freeing a slot while three run (over the bound) admits nobody until under the bound again.
    assert queue.release(quiet) is None and queue.running == 2
    following = queue.release(burst[0])
    assert following is not None and following.what == "busy-2" and queue.running == 2


def test_a_withdrawn_ticket_is_not_admitted() -> None:
    queue = StartQueue(slots=1, max_queued=10, spare=0)
    waiting = ticket("b", 1)
    first = ticket("a", 1)
    assert queue.offer(first) and not queue.offer(waiting)
    queue.withdraw(waiting)
    assert queue.release(first) is None and queue.running == 0 and queue.tenants_in_order() == []


def test_the_gate_blocks_a_start_until_a_slot_frees_and_reports_the_wait() -> None:
    clock = ManualClock(50.0)
    waits: list[tuple[str, float]] = []
    gate = StartGate(1, 5, clock, spare=0, on_wait=lambda t, waited: waits.append((t.what, waited)))
    first = gate.acquire("a", "first")
    admitted = threading.Event()

    def second() -> None:
        gate.release(gate.acquire("b", "second"))
        admitted.set()

    thread = threading.Thread(target=second)
    thread.start()
    assert not admitted.wait(0.2)  # queued while the first holds the only slot
    assert gate.figures() == {"running": 1, "queued": 1, "maxConcurrent": 1, "maxQueued": 5}
    clock.advance(7.5)
    gate.release(first)
    assert admitted.wait(5)
    thread.join(5)
    assert waits == [("second", 7.5)]
    assert gate.figures()["running"] == 0


def test_a_start_that_waits_too_long_gives_up_its_place() -> None:
    gate = StartGate(1, 5, spare=0)
    held = gate.acquire("a", "first")
    with pytest.raises(Unavailable) as refused:
        gate.acquire("b", "second", timeout_s=0.05)
    assert "start slot" in refused.value.message
    assert gate.figures()["queued"] == 0
    gate.release(held)
    assert gate.figures()["running"] == 0


def test_without_a_queue_a_busy_gate_refuses_at_once() -> None:
    gate = StartGate(1, 0, spare=0)
    held = gate.acquire("a", "x")
    with pytest.raises(Unavailable):
        gate.acquire("b", "refused: no queue")
    gate.release(held)
    gate.release(gate.acquire("b", "now there is room"))
    assert gate.figures()["running"] == 0


def test_a_closed_gate_refuses_its_waiting_starts_at_once_and_runs_no_new_one() -> None:
    """Shutdown (issue #18): a queued start never runs after the gate closed, whatever frees."""
    gate = StartGate(1, 5, spare=0)
    held = gate.acquire("a", "running")
    outcomes: list[str] = []

    def waiting() -> None:
        try:
            gate.acquire("b", "queued")
            outcomes.append("ran")
        except Unavailable as exc:
            outcomes.append(exc.message)

    thread = threading.Thread(target=waiting)
    thread.start()
    while gate.figures()["queued"] == 0:
        threading.Event().wait(0.01)
    gate.close()
    thread.join(5)
    assert outcomes == ["ashd is stopping; retry shortly"]
    gate.release(held)  # a running start ends: nothing queued is left to run
    assert gate.figures() == {"running": 0, "queued": 0, "maxConcurrent": 1, "maxQueued": 5}
    with pytest.raises(Unavailable, match="ashd is stopping"):
        gate.acquire("c", "after the close")


def test_a_cancelled_start_leaves_the_queue_at_once_and_a_running_one_is_untouched() -> None:
    gate = StartGate(1, 5, spare=0)
    held = gate.acquire("a", "session 1")
    outcomes: list[str] = []

    def waiting() -> None:
        try:
            gate.release(gate.acquire("a", "session 2"))
            outcomes.append("ran")
        except Unavailable as exc:
            outcomes.append(exc.message)

    thread = threading.Thread(target=waiting)
    thread.start()
    while gate.figures()["queued"] == 0:
        threading.Event().wait(0.01)
    assert not gate.cancel("a", "session 1", "stopped")  # running, not waiting: it goes on
    assert not gate.cancel("b", "session 2", "stopped")  # another tenant's ticket of that name: none
    assert gate.cancel("a", "session 2", "the session was stopped")
    thread.join(5)
    assert outcomes == ["the session was stopped"]
    assert gate.figures()["queued"] == 0
    gate.release(held)
    assert gate.figures()["running"] == 0


def test_a_retried_start_waits_at_the_front_of_its_tenants_queue_only() -> None:
    queue = StartQueue(slots=1, max_queued=10, spare=0)
    running = ticket("a", 0)
    assert queue.offer(running)
    for t in (ticket("a", 1), ticket("b", 1), ticket("a", 2)):
        assert not queue.offer(t)
    assert not queue.offer(ticket("a", 9), front=True)  # a's retry: before a's later starts
    order = []
    following = queue.release(running)
    while following is not None:
        order.append(following.what)
        following = queue.release(following)
    assert order == ["a-9", "b-1", "a-1", "a-2"]  # the round robin across tenants is unchanged
