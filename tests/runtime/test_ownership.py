"""SessionOwnership at its seams: two coordinators' ownership over fake leases that behave like
the Postgres ones (one holder per session, a rising generation, NOTIFY heard by every
coordinator). Claims take a free session at once, keep one held, get a session another
coordinator hands over, and answer 409 at once when the holder is busy, 503 when it is silent.
The lease connection's loss fences every session held. The real leases: tests/store/test_leases.py.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable

import pytest

from ashd.errors import Conflict, Unavailable
from ashd.runtime import ownership as own
from ashd.runtime.offload import Offload
from ashd.runtime.ownership import SessionOwnership


class Database:
    """What Postgres does for the leases: the locks, the sequence, NOTIFY to every listener."""

    def __init__(self) -> None:
        self.locks: dict[str, FakeLeases] = {}
        self.generations = itertools.count(1)
        self.listeners: list[FakeLeases] = []
        self.lock = threading.Lock()


class FakeLeases:
    def __init__(self, db: Database, name: str) -> None:
        self.db, self.name, self.up = db, name, True
        self.held_here: dict[str, int] = {}
        self.on_asked: Callable[[str, str], None] = lambda s, r: None
        self.on_answer: Callable[[str, str], None] = lambda r, a: None
        db.listeners.append(self)

    def generation(self, session_id: str) -> int | None:
        return self.held_here.get(session_id)

    def hold(self, session_id: str) -> tuple[int, bool] | None:
        with self.db.lock:
            if session_id in self.held_here:
                return self.held_here[session_id], False
            if session_id in self.db.locks:
                return None
            self.db.locks[session_id] = self
            self.held_here[session_id] = next(self.db.generations)
            return self.held_here[session_id], True

    def release(self, session_id: str) -> bool:
        with self.db.lock:
            if self.held_here.pop(session_id, None) is None:
                return False
            del self.db.locks[session_id]
            return True

    def holder(self, session_id: str) -> str | None:
        holder = self.db.locks.get(session_id)
        return holder.name if holder else None

    def ask(self, session_id: str, request_id: str) -> None:
        for other in self.db.listeners:
            if session_id in other.held_here:
                other.on_asked(session_id, request_id)

    def answer(self, request_id: str, answer: str) -> None:
        for other in self.db.listeners:
            other.on_answer(request_id, answer)

    def start(self) -> None: ...

    def stop(self) -> None: ...


class Coordinator:
    def __init__(self, db: Database, name: str, loop: asyncio.AbstractEventLoop, offload: Offload) -> None:
        self.leases = FakeLeases(db, name)
        self.answers: list[str] = []  # what this coordinator answered others (the metrics' counter)
        self.ownership = SessionOwnership(self.leases, offload, loop, self.answers.append)  # type: ignore[arg-type]
        self.leases.on_asked, self.leases.on_answer = self.ownership.asked, self.ownership.answered
        self.busy: set[str] = set()
        self.handed: list[str] = []
        self.fenced: list[str] = []
        self.ownership.bind(self.hand_over, self.fence)

    async def hand_over(self, session_id: str) -> bool:
        if session_id in self.busy:
            return False
        self.handed.append(session_id)
        await self.ownership.release(session_id)
        return True

    async def fence(self, session_id: str) -> None:
        self.fenced.append(session_id)


def run(scenario: Callable[[Coordinator, Coordinator], object]) -> None:
    offload = Offload()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        db = Database()
        await scenario(Coordinator(db, "a", loop, offload), Coordinator(db, "b", loop, offload))  # type: ignore[misc]

    try:
        asyncio.run(main())
    finally:
        offload.shutdown()


def test_a_free_session_is_taken_at_once_and_a_held_one_kept() -> None:
    async def scenario(a: Coordinator, b: Coordinator) -> None:
        assert await a.ownership.claim("s1") is True
        assert await a.ownership.claim("s1") is False  # held here: nothing new to read
        first = a.leases.held_here["s1"]
        await a.ownership.release("s1")
        assert await b.ownership.claim("s1") is True and b.leases.held_here["s1"] > first

    run(scenario)


def test_an_idle_holder_hands_the_session_over() -> None:
    async def scenario(a: Coordinator, b: Coordinator) -> None:
        assert await a.ownership.claim("s1")
        assert await b.ownership.claim("s1") is True
        assert a.handed == ["s1"] and "s1" not in a.leases.held_here and "s1" in b.leases.held_here
        assert a.ownership.handovers == 1 and a.answers == ["released"]
        assert await a.ownership.claim("s1") is True  # and back again
        assert b.handed == ["s1"]

    run(scenario)


def test_a_busy_holder_makes_the_claim_a_prompt_409() -> None:
    async def scenario(a: Coordinator, b: Coordinator) -> None:
        assert await a.ownership.claim("s1")
        a.busy.add("s1")
        began = time.monotonic()
        with pytest.raises(Conflict) as refused:
            await b.ownership.claim("s1")
        assert refused.value.message == own.TURN_RUNNING
        assert time.monotonic() - began < own.ANSWER_WAIT_S / 2  # the answer, not the deadline
        assert "s1" in a.leases.held_here and not a.handed
        assert a.answers == ["busy"]

    run(scenario)


def test_a_silent_holder_makes_the_claim_503_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(own, "ANSWER_WAIT_S", 0.6)

    async def scenario(a: Coordinator, b: Coordinator) -> None:
        assert await a.ownership.claim("s1")
        a.leases.on_asked = lambda s, r: None  # alive in the database, not answering
        with pytest.raises(Unavailable) as refused:
            await b.ownership.claim("s1")
        assert "coordinator a" in refused.value.message and refused.value.retry_after_s

    run(scenario)


def test_a_release_without_an_answer_is_noticed_by_trying_the_lock_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(own, "RETRY_LOCK_S", 0.05)

    async def scenario(a: Coordinator, b: Coordinator) -> None:
        assert await a.ownership.claim("s1")

        def let_go_quietly(session_id: str, request_id: str) -> None:
            a.leases.release(session_id)  # e.g. its sandbox was parked just then

        a.leases.on_asked = let_go_quietly
        assert await b.ownership.claim("s1") is True

    run(scenario)


def test_a_lost_lease_connection_fences_every_session_it_held() -> None:
    async def scenario(a: Coordinator, b: Coordinator) -> None:
        a.ownership.lost({"s1": 1, "s2": 2})
        for _ in range(100):
            if len(a.fenced) == 2:
                break
            await asyncio.sleep(0.01)
        assert sorted(a.fenced) == ["s1", "s2"]

    run(scenario)


def test_a_claim_waits_briefly_for_the_lease_connection_then_503s(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(own, "UP_WAIT_S", 0.2)

    async def scenario(a: Coordinator, b: Coordinator) -> None:
        a.leases.up = False
        with pytest.raises(Unavailable):
            await a.ownership.claim("s1")

    run(scenario)
