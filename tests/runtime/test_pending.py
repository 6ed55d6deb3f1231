"""answered(): Pending replies are waited for and the call repeated, all within one deadline."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future

import pytest

from ashd.actors.messages import Pending
from ashd.errors import Conflict, Unavailable
from ashd.runtime.pending import answered


class FakeAsk:
    """Answers Pending ``pending`` times (each resolved by a timer thread), then ``final``."""

    def __init__(self, pending: int, final: object, resolve_after_s: float = 0.05, fail_until: bool = False) -> None:
        self.pending = pending
        self.final = final
        self.resolve_after_s = resolve_after_s
        self.fail_until = fail_until
        self.calls: list[float] = []

    async def __call__(self, timeout: float) -> object:
        self.calls.append(timeout)
        if len(self.calls) > self.pending:
            if isinstance(self.final, Exception):
                raise self.final
            return self.final
        until: Future[None] = Future()

        def resolve() -> None:
            if self.fail_until:
                until.set_exception(RuntimeError("the start failed"))
            else:
                until.set_result(None)

        threading.Timer(self.resolve_after_s, resolve).start()
        return Pending(until)


def test_an_immediate_answer_is_returned_as_is() -> None:
    ask = FakeAsk(0, "grant")
    assert asyncio.run(answered(ask, 5.0)) == "grant"
    assert len(ask.calls) == 1


def test_pending_is_waited_for_and_the_call_repeated() -> None:
    ask = FakeAsk(2, "grant")
    assert asyncio.run(answered(ask, 5.0)) == "grant"
    assert len(ask.calls) == 3
    assert ask.calls[0] > ask.calls[2]  # each repeat gets what is left of the one deadline


def test_a_failed_start_behind_pending_is_the_repeated_calls_to_tell() -> None:
    ask = FakeAsk(1, Conflict("A turn is already running"), fail_until=True)
    with pytest.raises(Conflict):
        asyncio.run(answered(ask, 5.0))
    assert len(ask.calls) == 2


def test_a_pending_that_outlasts_the_deadline_is_unavailable() -> None:
    ask = FakeAsk(1, "grant", resolve_after_s=1.0)
    with pytest.raises(Unavailable, match="did not start within"):
        asyncio.run(answered(ask, 0.2))
    assert len(ask.calls) == 1


def queued_then_started(queued_s: float, start_s: float) -> Pending:
    """A Pending whose start waits ``queued_s`` in the start queue, then runs ``start_s``."""
    begun: Future[None] = Future()
    until: Future[None] = Future()
    threading.Timer(queued_s, begun.set_result, (None,)).start()
    threading.Timer(queued_s + start_s, until.set_result, (None,)).start()
    return Pending(until, begun)


def test_time_in_the_start_queue_is_not_charged_to_the_callers_deadline() -> None:
    pending = queued_then_started(queued_s=0.6, start_s=0.2)
    calls: list[float] = []

    async def ask(timeout: float) -> object:
        calls.append(timeout)
        return pending if len(calls) == 1 else "row"

    # 0.8 s in all, more than the 0.5 s deadline, but only 0.2 s of it after the start began.
    assert asyncio.run(answered(ask, 0.5)) == "row"


def test_a_sandbox_start_that_began_is_waited_for_past_the_deadline_up_to_the_queue_cap(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A start bounds itself (readiness timeout per attempt, the restart policy's attempts), and
    # a retry after a slow attempt queues again: its caller waits for the whole start.
    pending = queued_then_started(queued_s=0.1, start_s=1.0)
    calls: list[float] = []

    async def ask(timeout: float) -> object:
        calls.append(timeout)
        return pending if len(calls) == 1 else "grant"

    assert asyncio.run(answered(ask, 0.3)) == "grant"
    # ... but not forever: the queue's cap bounds it (made short here).
    monkeypatch.setattr("ashd.runtime.pending.QUEUE_WAIT_CAP_S", 0.4)
    stuck = queued_then_started(queued_s=0.1, start_s=3.0)

    async def ask_stuck(timeout: float) -> object:
        return stuck

    with pytest.raises(Unavailable, match="did not start within"):
        asyncio.run(answered(ask_stuck, 0.2))
