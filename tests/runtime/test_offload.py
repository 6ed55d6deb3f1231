"""Offload.ask: an actor's late reply is handed to on_late after its caller gave up, whether
its replies are waited for on a thread or call back (``ashd/actors/answers.py``)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pykka
import pytest

from ashd.actors.answers import answered_future
from ashd.errors import Unavailable
from ashd.runtime.offload import Offload


class Slow(pykka.ThreadingActor):
    def __init__(self, gate: threading.Event) -> None:
        super().__init__()
        self.gate = gate

    def grant(self) -> str:
        self.gate.wait(30)
        return "grant"

    def refuse(self) -> str:
        self.gate.wait(30)
        raise ValueError("no")


class CallingBack(Slow):
    _create_future = staticmethod(answered_future)


@pytest.fixture(params=[Slow, CallingBack], ids=["waited-on", "calling-back"])
def slow(request: pytest.FixtureRequest) -> Iterator[tuple[pykka.ActorProxy[Slow], threading.Event]]:
    gate = threading.Event()
    ref = request.param.start(gate)
    yield ref.proxy(), gate
    gate.set()
    ref.stop(timeout=30)


def test_a_reply_after_the_timeout_goes_to_on_late(slow: tuple[pykka.ActorProxy[Slow], threading.Event]) -> None:
    actor, gate = slow
    offload, late = Offload(), asyncio.Event()
    handed: list[str] = []

    def on_late(reply: str) -> None:
        handed.append(reply)
        late.set()

    async def scenario() -> None:
        with pytest.raises(Unavailable):
            await offload.ask(actor.grant(), timeout=0.1, on_late=on_late)
        assert handed == []
        gate.set()
        await asyncio.wait_for(late.wait(), 10)

    asyncio.run(scenario())
    offload.shutdown()
    assert handed == ["grant"]


def test_a_reply_to_a_cancelled_caller_goes_to_on_late(slow: tuple[pykka.ActorProxy[Slow], threading.Event]) -> None:
    actor, gate = slow
    offload, late = Offload(), asyncio.Event()
    handed: list[str] = []

    def on_late(reply: str) -> None:
        handed.append(reply)
        late.set()

    async def scenario() -> None:
        task = asyncio.ensure_future(offload.ask(actor.grant(), timeout=30, on_late=on_late))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gate.set()
        await asyncio.wait_for(late.wait(), 10)

    asyncio.run(scenario())
    offload.shutdown()
    assert handed == ["grant"]


def test_a_late_failure_hands_nothing_back(slow: tuple[pykka.ActorProxy[Slow], threading.Event]) -> None:
    actor, gate = slow
    offload = Offload()
    handed: list[str] = []

    async def scenario() -> None:
        with pytest.raises(Unavailable):
            await offload.ask(actor.refuse(), timeout=0.1, on_late=handed.append)
        gate.set()
        assert await offload.ask(actor.grant(), timeout=10) == "grant"  # queued behind the refusal
        await asyncio.sleep(0.2)  # the refusal's done callback has run on the loop by now

    asyncio.run(scenario())
    offload.shutdown()
    assert handed == []


def test_an_answer_in_time_is_returned_and_not_handed_back(
        slow: tuple[pykka.ActorProxy[Slow], threading.Event]) -> None:
    actor, gate = slow
    gate.set()
    offload = Offload()
    handed: list[str] = []
    assert asyncio.run(offload.ask(actor.grant(), timeout=10, on_late=handed.append)) == "grant"
    offload.shutdown()
    assert handed == []
