"""Session leases on a real Postgres (issue #11 item 5): one owner at a time, a generation that
only rises, the release request and its answer between two coordinators, and fencing: a lease
connection that is killed loses every lease at once (``on_lost``), and Postgres frees them for
another coordinator.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from ashd.store import Store, StoreUnavailable
from ashd.store.leases import lock_key, parse_pair

WAIT_S = 30.0


@pytest.fixture
def db_url(pg_database_url: str) -> str:
    return pg_database_url  # Postgres only: on SQLite one daemon owns every session


class Coordinator:
    """One coordinator's leases, with what its callbacks heard."""

    def __init__(self, store: Store, name: str) -> None:
        self.asked: queue.Queue[tuple[str, str]] = queue.Queue()
        self.answers: queue.Queue[tuple[str, str]] = queue.Queue()
        self.lost: queue.Queue[dict[str, int]] = queue.Queue()
        leases = store.session_leases(name, lambda s, r: self.asked.put((s, r)),
                                      lambda r, a: self.answers.put((r, a)), self.lost.put)
        assert leases is not None
        self.leases = leases
        leases.start()
        assert leases.wait_up(WAIT_S)


@pytest.fixture
def pair(store: Store) -> Iterator[tuple[Coordinator, Coordinator]]:
    a, b = Coordinator(store, "coord-a"), Coordinator(store, "coord-b")
    yield a, b
    a.leases.stop()
    b.leases.stop()


def test_one_owner_at_a_time_and_the_generation_rises(pair: tuple[Coordinator, Coordinator]) -> None:
    a, b = pair
    first = a.leases.hold("s1")
    assert first is not None and first[1] is True
    assert a.leases.hold("s1") == (first[0], False)  # held here: kept, not locked twice
    assert b.leases.hold("s1") is None  # another coordinator holds it
    assert b.leases.holder("s1") == "coord-a" and a.leases.holder("s2") is None
    assert a.leases.release("s1") and not a.leases.release("s1")
    second = b.leases.hold("s1")
    assert second is not None and second[0] > first[0]  # fencing: the new owner's number is higher
    assert a.leases.hold("s1") is None
    assert b.leases.generation("s1") == second[0] and a.leases.generation("s1") is None


def test_the_holder_hears_a_release_request_and_the_asker_its_answer(pair: tuple[Coordinator, Coordinator]) -> None:
    a, b = pair
    assert a.leases.hold("s1") is not None
    b.leases.ask("s2", "r0")  # nobody holds s2: nobody answers
    b.leases.ask("s1", "r1")
    assert a.asked.get(timeout=WAIT_S) == ("s1", "r1")
    assert b.asked.empty()  # only the holder is asked
    a.leases.answer("r1", "busy")
    assert b.answers.get(timeout=WAIT_S) == ("r1", "busy")


def test_a_killed_lease_connection_loses_every_lease_at_once(db_url: str, pair: tuple[Coordinator, Coordinator]
                                                              ) -> None:
    a, b = pair
    gens = {sid: a.leases.hold(sid) for sid in ("s1", "s2")}
    assert all(g is not None for g in gens.values())
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:  # the connection dies (as when the network drops it)
        conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE application_name = 'ashd-lease coord-a'"))
        conn.commit()
    engine.dispose()
    lost = a.lost.get(timeout=WAIT_S)
    assert lost == {sid: g[0] for sid, g in gens.items() if g is not None}
    assert a.leases.held() == {}
    assert b.leases.hold("s1") is not None  # Postgres freed the lock with the connection
    assert a.leases.wait_up(WAIT_S)  # it connects again, holding nothing
    assert a.leases.hold("s1") is None and a.leases.hold("s3") is not None


def test_a_stopped_lease_keeper_refuses_calls_at_once(store: Store) -> None:
    a = Coordinator(store, "coord-a")
    a.leases.stop()
    with pytest.raises(StoreUnavailable):
        a.leases.hold("s1")


def test_keys_and_payloads() -> None:
    assert lock_key("s1") == lock_key("s1") != lock_key("s2")
    assert -(2 ** 63) <= lock_key("x") < 2 ** 63
    assert parse_pair("s1 r1") == ("s1", "r1")
    assert parse_pair("s1") is None and parse_pair(" r1") is None and parse_pair("a b c") is None
