"""ashd/actors/starts.py without threads: one start at a time, backoffs, cancel, failures."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from ashd.actors.messages import SandboxStarted
from ashd.actors.restarts import RestartGovernor
from ashd.actors.start import StartOutcome
from ashd.actors.starts import FAILURE_KEPT_S, SessionStarts
from ashd.actors.timers import Timer
from ashd.actors.vitals import StartRecord
from ashd.config import SupervisionConfig
from ashd.errors import NotFound, SandboxFailed, StartTimedOut, Unavailable
from ashd.policy import ManualClock

READY = StartOutcome(SandboxStarted("sb", "/s.sock", 42, 5.0))


class Owner:
    """Records what the starts ask of their session actor."""

    def __init__(self) -> None:
        self.launched: list[int] = []
        self.timers: list[tuple[float, Timer]] = []
        self.readied: list[str] = []
        self.failures: list[tuple[str, Exception, str | None]] = []
        self.discarded: list[StartOutcome] = []
        self.launch_error: Exception | None = None
        self.withdrawn = 0
        self.retries: list[bool] = []

    def launch(self, seq: int, began: Callable[[], None], decided: Callable[[str], None],
               retry: bool = False) -> None:
        if self.launch_error is not None:
            raise self.launch_error
        self.launched.append(seq)
        self.retries.append(retry)

    def wake_after(self, delay_s: float, seq: int) -> Timer:
        timer = Timer(delay_s, lambda: None)
        self.timers.append((delay_s, timer))
        return timer

    def ready(self, purpose: str, outcome: StartOutcome) -> None:
        self.readied.append(purpose)

    def failed(self, purpose: str, error: Exception, gave_up: str | None) -> None:
        self.failures.append((purpose, error, gave_up))

    def discard(self, outcome: StartOutcome) -> None:
        self.discarded.append(outcome)

    def withdraw(self) -> None:
        self.withdrawn += 1


def make(**config: float) -> tuple[SessionStarts, Owner, ManualClock]:
    clock = ManualClock(100.0)
    owner = Owner()
    restarts = RestartGovernor(SupervisionConfig(**config), clock=clock, rng=random.Random(3))  # type: ignore[arg-type]
    return SessionStarts(owner, "s1", "t", restarts, StartRecord()), owner, clock  # type: ignore[arg-type]


def raises(call: Callable[[], object], kind: type[Exception]) -> Exception:
    with pytest.raises(kind) as caught:
        call()
    return caught.value


def test_one_start_at_a_time_and_every_caller_gets_its_pending() -> None:
    starts, owner, _ = make()
    first = starts.ensure("run")
    assert starts.ensure("run").until is first.until and owner.launched == [1]
    starts.ended(1, READY)
    assert first.until.done() and owner.readied == ["run"] and not starts.in_progress


def test_a_failed_attempt_waits_out_a_backoff_then_gives_up_with_the_reason() -> None:
    starts, owner, _ = make(intensity=1)
    pending = starts.ensure("create")
    starts.ended(1, StartOutcome(error=SandboxFailed("boom")))
    (delay, _timer), = owner.timers
    assert 0.2 <= delay <= 0.4 and not pending.until.done()  # a timer, not a sleep
    starts.backoff_over(1)
    assert owner.launched == [1, 1]
    starts.ended(1, StartOutcome(error=SandboxFailed("boom again")))
    assert pending.until.done()
    purpose, error, gave_up = owner.failures[0]
    assert purpose == "create" and isinstance(error, SandboxFailed) and "2 times" in (gave_up or "")
    assert "2 times" in str(raises(lambda: starts.ensure("create"), SandboxFailed))  # the repeated call
    starts.ensure("run")  # raised once: the next call starts again (after the backoff still running)
    assert owner.launched == [1, 1] and len(owner.timers) == 2


def test_capacity_is_not_the_process_fault_and_is_not_retried() -> None:
    starts, owner, _ = make()
    starts.ensure("create")
    starts.ended(1, StartOutcome(error=Unavailable("full", retry_after_s=5)))
    assert owner.timers == [] and owner.failures[0][2] is None
    raises(lambda: starts.ensure("create"), Unavailable)


def test_a_start_that_cannot_begin_fails_at_once() -> None:
    starts, owner, _ = make()
    owner.launch_error = NotFound("Agent gone")
    raises(lambda: starts.ensure("run"), NotFound)
    assert not starts.in_progress


def test_an_old_failure_is_not_reported_to_an_unrelated_call() -> None:
    starts, _, clock = make()
    starts.ensure("create")
    starts.ended(1, StartOutcome(error=Unavailable("full", retry_after_s=5)))
    clock.advance(FAILURE_KEPT_S + 1)
    assert not starts.ensure("run").until.done()


def test_cancel_ends_a_backoff_at_once_and_waits_for_a_running_attempt() -> None:
    starts, owner, clock = make()
    pending = starts.ensure("run")
    starts.ended(1, StartOutcome(error=SandboxFailed("boom")))
    assert starts.cancel() is None and pending.until.done() and owner.timers[0][1].cancelled
    assert owner.failures == []  # cancelled: nobody is told of a failure
    assert owner.withdrawn == 0  # no attempt ran: nothing waits in the start queue

    clock.advance(1)  # the backoff is over: the next start's attempt runs at once
    again = starts.ensure("run")
    waiting = starts.cancel()
    assert waiting is not None and waiting.until is again.until and not again.until.done()
    assert owner.withdrawn == 1  # a running attempt that still waits in the start queue leaves it
    starts.ended(2, READY)  # the bridge became ready anyway: it goes
    assert again.until.done() and owner.discarded == [READY] and owner.readied == []


def test_a_crash_sets_the_backoff_of_the_next_start() -> None:
    starts, owner, clock = make()
    starts.ensure("run")
    starts.ended(1, READY)
    clock.advance(120)  # a long, healthy run
    starts.crashed("exit code 1")
    starts.ensure("run")
    assert owner.launched == [1] and len(owner.timers) == 1  # the new start waits on a timer


def test_slow_starts_are_retried_but_never_spend_the_tenants_restart_budget() -> None:
    starts, owner, _ = make(intensity=3, budget_limit=1)
    starts.ensure("create")
    for attempt in (1, 2, 3):  # attempts of start 1
        starts.ended(1, StartOutcome(error=StartTimedOut("not ready within 30s (the host may be busy)")))
        assert len(owner.timers) == attempt  # a backoff each time, then the next attempt
        starts.backoff_over(1)
    assert not starts._restarts.budget_spent("t") and not starts._restarts.budget_spent()
    # A start that never becomes ready is still stopped by this session's own intensity.
    starts.ended(1, StartOutcome(error=StartTimedOut("not ready within 30s")))
    (purpose, error, gave_up), = owner.failures
    assert purpose == "create" and isinstance(error, SandboxFailed) and gave_up and "4 times" in gave_up


def test_a_crash_loop_spends_its_tenants_budget_only() -> None:
    clock = ManualClock(100.0)
    governor = RestartGovernor(SupervisionConfig(budget_limit=2), clock=clock, rng=random.Random(3))
    record = StartRecord()

    def session(tenant: str) -> tuple[SessionStarts, Owner]:
        owner = Owner()
        return SessionStarts(owner, f"{tenant}-s", tenant, governor, record), owner  # type: ignore[arg-type]

    for _ in range(2):  # two sessions of one tenant whose CLI dies at once: restarted, charged
        starts, owner = session("loud")
        starts.ensure("create")
        starts.ended(1, StartOutcome(error=SandboxFailed("exit code 1: boom")))
        assert owner.timers and not owner.failures
    starts, owner = session("loud")
    starts.ensure("create")
    starts.ended(1, StartOutcome(error=SandboxFailed("exit code 1: boom")))
    (_, error, _), = owner.failures
    assert isinstance(error, Unavailable) and "this tenant's agent process restarts" in error.message
    assert "restart budget spent" in error.message and governor.budget_spent("loud")
    # Another tenant is not refused: its budget is its own.
    quiet, quiet_owner = session("quiet")
    quiet.ensure("create")
    quiet.ended(1, StartOutcome(error=SandboxFailed("exit code 1: boom")))
    assert quiet_owner.timers and not quiet_owner.failures and not governor.budget_spent("quiet")


def test_a_retried_attempt_keeps_its_place_in_the_start_queue() -> None:
    """Only a later attempt of the same start is a retry (it queues at the front of its
    tenant's turn); the next start's first attempt is not."""
    starts, owner, clock = make()
    starts.ensure("run")
    starts.ended(1, StartOutcome(error=StartTimedOut("slow under load")))
    clock.advance(5)
    owner.timers[-1][1].cancel()
    starts.backoff_over(1)
    starts.ended(1, READY)
    assert owner.retries == [False, True]
    starts.ensure("run")  # a new start: its first attempt waits its turn like any other
    assert owner.retries == [False, True, False]
