"""The runner registry (ashd/store/runner_queries.py) on SQLite and Postgres."""

from __future__ import annotations

import threading

import pytest

from ashd.store import Store
from ashd.store import runner_queries as rq

FAR_PAST = "2000-01-01T00:00:00.000Z"
SIDS = ["6f1c2b9e-0d7a-4c55-9d3e-2a1b0c9d8e7" + c for c in "abcd"]


def _register(store: Store, runner_id: str, max_sandboxes: int = 4) -> rq.RunnerRow:
    return store.write_with(rq.register, runner_id, "127.0.0.1", 4200, max_sandboxes, store.now())


def test_register_again_raises_the_generation_and_resets_the_counts(store: Store) -> None:
    first = _register(store, "r1")
    assert (first.generation, first.active_count, first.draining) == (1, 0, False)
    store.write_with(rq.heartbeat, "r1", 3, 1, store.now())
    store.write_with(rq.set_draining, "r1", True)
    again = _register(store, "r1")
    assert (again.generation, again.active_count, again.warming_count) == (2, 0, 0)
    assert again.draining  # an operator's drain outlives the runner's restart


def test_heartbeat_of_an_unknown_or_older_generation_asks_to_register(store: Store) -> None:
    assert store.write_with(rq.heartbeat, "nobody", 0, 0, store.now()) is None
    row = _register(store, "r1")
    assert store.write_with(rq.heartbeat, "r1", 2, 0, store.now(), row.generation) is not None
    _register(store, "r1")  # it restarted: generation 2
    assert store.write_with(rq.heartbeat, "r1", 2, 0, store.now(), row.generation) is None


def test_pick_takes_the_least_loaded_live_runner_and_reserves_a_slot(store: Store) -> None:
    _register(store, "r1", max_sandboxes=4)
    _register(store, "r2", max_sandboxes=4)
    store.write_with(rq.heartbeat, "r1", 3, 0, store.now())
    cutoff = FAR_PAST
    picked = [store.write_with(rq.pick, cutoff) for _ in range(5)]  # free: r1 1, r2 4; ties by id
    assert [p.id if p else None for p in picked] == ["r2", "r2", "r2", "r1", "r2"]
    assert store.write_with(rq.pick, cutoff) is None  # every slot booked
    store.write_with(rq.release_warming, "r2")
    assert store.write_with(rq.pick, cutoff).id == "r2"  # type: ignore[union-attr]


def test_pick_skips_draining_and_dead_runners(store: Store) -> None:
    _register(store, "r1")
    store.write_with(rq.set_draining, "r1", True)
    assert store.write_with(rq.pick, FAR_PAST) is None
    _register(store, "r2")
    assert store.write_with(rq.pick, store.now()) is None  # heard from at "now": not after the cutoff
    assert store.write_with(rq.pick, FAR_PAST).id == "r2"  # type: ignore[union-attr]


def test_concurrent_picks_never_overbook_the_last_slots(store: Store) -> None:
    _register(store, "r1", max_sandboxes=3)
    _register(store, "r2", max_sandboxes=2)
    results: list[str | None] = []
    lock = threading.Lock()

    def pick() -> None:
        row = store.write_with(rq.pick, FAR_PAST)
        with lock:
            results.append(row.id if row else None)

    threads = [threading.Thread(target=pick) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r for r in results if r) == ["r1", "r1", "r1", "r2", "r2"]
    assert sum(row.warming_count for row in store.read_with(rq.list_all)) == 5


def test_deregister_and_sweep_pause_the_runners_live_sessions(store: Store) -> None:
    _register(store, "r1")
    _register(store, "r2")
    store.create_session("t1", SIDS[0], "qa", "active", runner_id="r1")
    store.create_session("t1", SIDS[1], "qa", "ended", runner_id="r1")
    store.create_session("t1", SIDS[2], "qa", "active", runner_id="r2")
    store.create_session("t1", SIDS[3], "qa", "active")
    assert store.write_with(rq.deregister, "r1", "runner r1 stopped") == [SIDS[0]]
    paused = store.get_session("t1", SIDS[0])
    assert paused is not None and (paused.status, paused.status_reason) == ("paused", "runner r1 stopped")
    assert store.get_session("t1", SIDS[1]).status == "ended"  # type: ignore[union-attr]
    assert [r.id for r in store.read_with(rq.list_all)] == ["r2"]
    store.write_with(rq.heartbeat, "r2", 1, 0, "2001-01-01T00:00:00.000Z")
    assert store.write_with(rq.sweep, "2002-01-01T00:00:00.000Z") == {"r2": [SIDS[2]]}
    assert store.write_with(rq.sweep, "2002-01-01T00:00:00.000Z") == {}  # idempotent
    assert store.get_session("t1", SIDS[3]).status == "active"  # type: ignore[union-attr]


@pytest.mark.parametrize("draining", [True, False])
def test_set_draining_of_an_unknown_runner_is_none(store: Store, draining: bool) -> None:
    assert store.write_with(rq.set_draining, "nobody", draining) is None


def test_a_runner_that_left_registers_again_under_a_higher_generation(store: Store) -> None:
    first = _register(store, "r1")
    store.write_with(rq.deregister, "r1", "runner r1 shut down")
    assert store.read_with(rq.get, "r1") is None and store.read_with(rq.list_all) == []
    assert store.write_with(rq.heartbeat, "r1", 0, 0, store.now()) is None  # gone: it must register
    assert store.write_with(rq.set_draining, "r1", True) is None
    second = _register(store, "r1")
    store.write_with(rq.heartbeat, "r1", 0, 0, "2001-01-01T00:00:00.000Z")
    assert store.write_with(rq.sweep, "2002-01-01T00:00:00.000Z") == {"r1": []}
    third = _register(store, "r1")
    # Fencing never goes back: a partitioned holder of an older generation stays stale.
    assert (first.generation, second.generation, third.generation) == (1, 2, 3)
    assert store.write_with(rq.heartbeat, "r1", 0, 0, store.now(), second.generation) is None


def test_a_late_deregistration_of_an_older_generation_is_ignored(store: Store) -> None:
    old = _register(store, "r1")
    store.create_session("t1", SIDS[0], "qa", "active", runner_id="r1")
    new = _register(store, "r1")  # restarted before its old process deregistered
    assert store.write_with(rq.deregister, "r1", "late", old.generation) == []
    assert store.read_with(rq.get, "r1").generation == new.generation  # type: ignore[union-attr]
    assert store.write_with(rq.deregister, "r1", "shut down", new.generation) == [SIDS[0]]


def test_cutoff_and_age_are_plain_timestamp_arithmetic() -> None:
    assert rq.cutoff("2026-12-06T10:00:30.500Z", 30) == "2026-12-06T10:00:00.500Z"
    assert rq.age_s("2026-12-06T10:00:00.000Z", "2026-12-06T10:00:01.250Z") == 1.25


def test_takers_are_the_live_runners_with_room_that_do_not_drain(store: Store) -> None:
    _register(store, "r1", max_sandboxes=4)
    _register(store, "r2", max_sandboxes=2)
    _register(store, "r3", max_sandboxes=4)
    _register(store, "full", max_sandboxes=1)
    store.write_with(rq.heartbeat, "full", 1, 0, store.now())
    store.write_with(rq.set_draining, "r3", True)
    cutoff = rq.cutoff(store.now(), 30)
    assert store.read_with(rq.takers, cutoff) == ["r1", "r2"]  # most room first
    assert store.read_with(rq.takers, store.now()) == []  # none heard from after the cutoff
