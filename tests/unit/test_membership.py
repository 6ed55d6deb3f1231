"""A runner's membership (ashd/runner/membership.py) over a fake transport and a fake sleep:
capped backoff, fail-over across coordinators, re-registration on 404, deregistration."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from ashd.runner.membership import RETRY_CAP_S, Answer, Figures, Identity, Membership

A, B = "http://a:4100", "http://b:4100"
IDENTITY = Identity("r1", "10.0.0.5", 4200, 8)
Script = Callable[[str, str], Answer]


class Fakes:
    """Answers by (coordinator, call) from ``script``; records every call and every sleep."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.sleeps: list[float] = []
        self.now = 100.0

    async def post(self, url: str, body: dict[str, Any]) -> Answer:
        base, _, call = url.partition("/api/internal/runners/")
        self.calls.append((base, call, body))
        return self.script(base, call)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)  # time passes at once, but other tasks get their turn

    async def figures(self) -> Figures:
        return Figures(active=3, warming=1, stats={"running": 2, "warming": 1})

    def membership(self, urls: list[str]) -> Membership:
        return Membership(IDENTITY, urls, self.post, self.figures, 10.0, self.sleep, lambda: self.now)

    def only(self, call: str) -> list[str]:
        return [base for base, name, _ in self.calls if name == call]


def ok(generation: int = 7) -> Answer:
    return Answer(200, {"ok": True, "generation": generation})


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def until(condition: Callable[[], bool], turns: int = 10_000) -> None:
    """Let the other tasks run until ``condition`` holds; fail (never hang) if it does not."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


def test_registration_keeps_retrying_with_a_doubling_delay_capped(caplog: pytest.LogCaptureFixture) -> None:
    tries = {"n": 0}

    def script(base: str, call: str) -> Answer:
        tries["n"] += 1
        return ok() if tries["n"] > 8 else Answer(0, error="Connection refused")

    fakes = Fakes(script)
    with caplog.at_level(logging.WARNING):
        assert run(fakes.membership([A]).register()) == 7
    # Ash: 1, 2, 4, 8, 16 s, then gives up; here it goes on, capped.
    assert fakes.sleeps == [1, 2, 4, 8, 16, RETRY_CAP_S, RETRY_CAP_S, RETRY_CAP_S]
    failures = [r.getMessage() for r in caplog.records if "registering with" in r.getMessage()]
    assert len(failures) == 8
    assert failures[0] == ("runner r1: registering with http://a:4100 failed (Connection refused; attempt 1); "
                           "retrying in 1 s")
    body = fakes.calls[-1][2]
    assert body == {"runnerId": "r1", "host": "10.0.0.5", "port": 4200, "maxSandboxes": 8}


def test_registration_tries_the_next_coordinator_before_waiting(caplog: pytest.LogCaptureFixture) -> None:
    fakes = Fakes(lambda base, call: ok() if base == B else Answer(401, {"error": "Invalid internal secret"}))
    membership = fakes.membership([A, B])
    with caplog.at_level(logging.WARNING):
        run(membership.register())
    assert fakes.only("register") == [A, B] and fakes.sleeps == []
    assert "set the same ASH_INTERNAL_SECRET" in caplog.text and "trying the next coordinator" in caplog.text
    run(membership.heartbeat())
    assert fakes.only("heartbeat") == [B]  # the one that answered is asked first from now on


def test_heartbeats_fail_over_and_carry_the_pool_figures_and_generation() -> None:
    down = {A}
    fakes = Fakes(lambda base, call: Answer(0, error="timeout") if base in down else ok(3))
    membership = fakes.membership([A, B])
    run(membership.register())
    assert fakes.only("register") == [A, B]
    fakes.calls.clear()
    down.clear()
    assert run(membership.heartbeat())
    assert fakes.only("heartbeat") == [B]
    assert fakes.calls[0][2] == {"runnerId": "r1", "stats": {"running": 2, "warming": 1}, "activeCount": 3,
                                 "generation": 3}
    down.add(B)
    assert run(membership.heartbeat())
    assert fakes.only("heartbeat") == [B, B, A]


def test_no_coordinator_answering_a_heartbeat_is_logged_and_beating_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    fakes = Fakes(lambda base, call: ok() if call == "register" else Answer(503, {"error": "db down"}))
    membership = fakes.membership([A, B])
    run(membership.register())
    with caplog.at_level(logging.WARNING):
        assert run(membership.heartbeat()) is True
    assert "no coordinator took its heartbeat (http://a:4100: HTTP 503: db down; http://b:4100: HTTP 503" in caplog.text
    assert membership.generation == 7  # still registered as far as it knows


def test_a_heartbeat_answered_404_makes_the_runner_register_again_at_once() -> None:
    swept = {"yes": False}
    generations = iter([1, 2])

    def script(base: str, call: str) -> Answer:
        if call == "register":
            return ok(next(generations))
        return Answer(404, {"error": "Runner r1 is not registered"}) if swept["yes"] else ok()

    fakes = Fakes(script)
    membership = fakes.membership([A])

    async def scenario() -> None:
        task = asyncio.ensure_future(membership.run())
        await until(lambda: len(fakes.only("heartbeat")) >= 2)
        swept["yes"] = True
        try:
            await until(lambda: len(fakes.only("register")) >= 2)
        finally:
            task.cancel()

    run(scenario())
    assert membership.generation == 2
    names = [name for _, name, _ in fakes.calls]
    third = names.index("register", 1)
    assert names[third - 1] == "heartbeat" and fakes.sleeps[: third] == [10.0] * len(fakes.sleeps[: third])


def test_stop_deregisters_with_the_generation_held_and_status_shows_no_secret() -> None:
    fakes = Fakes(lambda base, call: Answer(200, {"ok": True, "pausedSessions": 2}) if call == "deregister"
                  else ok(5))
    membership = fakes.membership([A])

    async def scenario() -> None:
        membership.start()
        await until(lambda: bool(fakes.only("register")))
        status = membership.status()
        assert (status["registered"], status["generation"]) == (True, 5)
        assert status["lastHeartbeatAgeS"] in (0.0, 10.0)  # registered now, or one fake interval ago
        await membership.stop()

    run(scenario())
    assert fakes.calls[-1] == (A, "deregister", {"runnerId": "r1", "generation": 5})
    assert membership.status()["registered"] is False


def test_a_runner_never_registered_does_not_deregister() -> None:
    fakes = Fakes(lambda base, call: ok())
    run(fakes.membership([A]).leave())
    assert fakes.calls == []
    with pytest.raises(ValueError):
        fakes.membership([])


class Fenced:
    """Records the fence's calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def fenced(self, why: str) -> None:
        self.calls.append(f"fenced: {why}")

    def restored(self) -> None:
        self.calls.append("restored")


def test_a_runner_no_coordinator_hears_fences_itself_counting_from_the_last_heartbeat_sent(
        caplog: pytest.LogCaptureFixture) -> None:
    reachable = {"yes": True}
    fakes = Fakes(lambda base, call: ok(3) if reachable["yes"] else Answer(0, error="No route to host"))
    slow = {"answer_s": 2.0}

    async def post(url: str, body: dict[str, Any]) -> Answer:  # each answer arrives 2 s after its send
        fakes.now += slow["answer_s"]
        return await Fakes.post(fakes, url, body)

    fence = Fenced()
    membership = Membership(IDENTITY, [A], post, fakes.figures, 1.0, fakes.sleep, lambda: fakes.now,
                            fence_after_s=5.0, on_fenced=fence.fenced, on_restored=fence.restored)
    assert not membership.check_fence()  # never registered: nothing to fence
    run(membership.register())  # sent at 100, taken at 102
    run(membership.heartbeat())  # sent at 102, taken at 104
    reachable["yes"] = False
    run(membership.heartbeat())  # sent at 104, not taken (106)
    fakes.now = 105.9
    assert not membership.check_fence() and fence.calls == []
    fakes.now = 106.1  # 4.1 s after the send of the last heartbeat taken (2.1 s after its answer)
    with caplog.at_level(logging.WARNING):
        assert membership.check_fence()
    assert fence.calls == ["fenced: no coordinator took a heartbeat sent in the last 4 s (the liveness timeout "
                           "5 s less one heartbeat interval; 4.1 s since the last one taken was sent)"]
    assert "runner r1 fenced" in caplog.text and membership.status()["fenced"] is True
    fakes.now = 200.0
    assert membership.check_fence() and len(fence.calls) == 1  # once

    reachable["yes"] = True
    run(membership.heartbeat())  # taken again: the fence lifts
    assert fence.calls[1:] == ["restored"] and not membership.fenced and not membership.check_fence()


def test_the_coordinators_shorter_liveness_timeout_is_the_runners_fence() -> None:
    fakes = Fakes(lambda base, call: Answer(200, {"ok": True, "generation": 1, "livenessTimeoutS": 3}))
    fence = Fenced()
    membership = Membership(IDENTITY, [A], fakes.post, fakes.figures, 1.0, fakes.sleep, lambda: fakes.now,
                            fence_after_s=30.0, on_fenced=fence.fenced)
    run(membership.register())  # at 100
    fakes.now = 102.1
    assert membership.check_fence() and "in the last 2 s (the liveness timeout 3 s" in fence.calls[0]

    longer = Fakes(lambda base, call: Answer(200, {"ok": True, "generation": 1, "livenessTimeoutS": 60}))
    kept = Membership(IDENTITY, [A], longer.post, longer.figures, 1.0, longer.sleep, lambda: longer.now,
                      fence_after_s=30.0)
    run(kept.register())
    longer.now = 128.9
    assert not kept.check_fence()  # its own, shorter, timeout holds
    longer.now = 129.1
    assert kept.check_fence()


def test_the_fence_watch_runs_with_the_membership_and_stops_with_it() -> None:
    fakes = Fakes(lambda base, call: ok() if call != "heartbeat" else Answer(0, error="timed out"))
    fence = Fenced()
    membership = Membership(IDENTITY, [A], fakes.post, fakes.figures, 1.0, fakes.sleep, lambda: fakes.now,
                            fence_after_s=5.0, on_fenced=fence.fenced)

    async def scenario() -> None:
        membership.start()
        await until(lambda: bool(fence.calls))
        await membership.stop()

    run(scenario())
    assert len(fence.calls) == 1 and 0.25 in fakes.sleeps  # checked every quarter heartbeat
