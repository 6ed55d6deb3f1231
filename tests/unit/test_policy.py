"""Restart policy (ashd/policy.py): table-driven scenarios of (t, event) -> decisions."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import pytest

from ashd.policy import (
    MAX_EXITS_KEPT,
    Budget,
    ChildHistory,
    Clock,
    Decision,
    Escalate,
    GiveUp,
    ManualClock,
    Restart,
    RestartSpec,
    RestartType,
    Stay,
    SystemClock,
    decide,
)

P, T, TMP = RestartType.PERMANENT, RestartType.TRANSIENT, RestartType.TEMPORARY
BOOM = "exit code 1: boom"


class MaxRandom(random.Random):
    """uniform(a, b) == b: every delay is its ceiling."""

    def random(self) -> float:
        return 1.0


class MinRandom(random.Random):
    """uniform(a, b) == a: every delay is the floor."""

    def random(self) -> float:
        return 0.0


# Events: ("start",) | ("exit", abnormal) | ("exit", abnormal, detail)
S = ("start",)
X = ("exit", True)  # abnormal exit, detail BOOM
N = ("exit", False)  # normal exit


@dataclass(frozen=True)
class Reason:
    """Expect a GiveUp or Escalate whose reason equals (exact=True) or contains `text`."""

    kind: type
    text: str
    exact: bool = False


@dataclass
class Scenario:
    id: str
    steps: list[tuple[float, tuple[Any, ...]]]
    expected: list[Decision | Reason]
    spec: dict[str, Any] = field(default_factory=dict)
    budget: Budget = field(default_factory=Budget)
    rng: str = "max"


def R(delay: float, attempt: int, of: int = 3, failed_start: bool = False) -> Restart:
    return Restart(delay_s=delay, attempt=attempt, of=of, failed_start=failed_start)


def crash_every(period: float, uptime: float, count: int, t0: float = 0.0) -> list[tuple[float, tuple[Any, ...]]]:
    steps: list[tuple[float, tuple[Any, ...]]] = []
    for k in range(count):
        start = t0 + k * period
        steps += [(start, S), (start + uptime, X)]
    return steps


SCENARIOS = [
    # --- restart types -------------------------------------------------------------------
    Scenario("permanent restarts after a normal exit", [(0, S), (5, N)], [R(0.4, 1)], {"type": P}),
    Scenario("permanent restarts after an abnormal exit", [(0, S), (5, X)], [R(0.4, 1)], {"type": P}),
    Scenario("transient restarts after an abnormal exit", [(0, S), (5, X)], [R(0.4, 1)], {"type": T}),
    Scenario("transient stays after a normal exit", [(0, S), (5, N)], [Stay()], {"type": T}),
    Scenario("temporary stays after a normal exit", [(0, S), (5, N)], [Stay()], {"type": TMP}),
    Scenario(
        "temporary gives up after an abnormal exit",
        [(0, S), (5, X)],
        [Reason(GiveUp, f"bridge is temporary and is not restarted (last: {BOOM})", exact=True)],
        {"type": TMP},
    ),
    Scenario(
        "normal exits of a transient child do not count towards intensity or backoff",
        [(0, S), (5, X), (6, S), (7, N), (8, S), (13, X)],
        [R(0.4, 1), Stay(), R(0.8, 2)],
    ),
    # --- intensity ------------------------------------------------------------------------
    Scenario(
        "the 4th exit within the period fails the child",
        crash_every(5, 4, 4),
        [R(0.4, 1), R(0.8, 2), R(1.6, 3), Reason(GiveUp, f"bridge exited 4 times in 60s (last: {BOOM})", exact=True)],
    ),
    Scenario(
        "permanent children count normal exits too",
        [(0, S), (5, N), (6, S), (11, N), (12, S), (17, N), (18, S), (23, N)],
        [R(0.4, 1), R(0.8, 2), R(1.6, 3), Reason(GiveUp, "bridge exited 4 times in 60s (last: exit 0)", exact=True)],
        {"type": P},
    ),
    Scenario(
        "the window slides: an exit older than the period no longer counts",
        [*crash_every(5, 4, 3), (61, S), (66, X)],
        # exits at 4, 9, 14, 66: at t=66 the window (6, 66] holds 9, 14, 66
        [R(0.4, 1), R(0.8, 2), R(1.6, 3), R(3.2, 3)],
    ),
    Scenario(
        "a custom intensity and period",
        crash_every(2, 1.5, 3),
        [R(0.4, 1, of=2), R(0.8, 2, of=2), Reason(GiveUp, "bridge exited 3 times in 10s", exact=False)],
        {"intensity": 2, "period_s": 10},
    ),
    Scenario(
        "intensity 0 fails on the first exit",
        [(0, S), (5, X)],
        [Reason(GiveUp, f"bridge exited once in 60s (last: {BOOM})", exact=True)],
        {"intensity": 0},
    ),
    # --- backoff --------------------------------------------------------------------------
    Scenario(
        "backoff ceiling doubles from 0.4 s and caps at 30 s",
        crash_every(2, 1.5, 10),
        [R(d, 1) for d in (0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30, 30, 30)],
        {"period_s": 1},  # only the current exit is ever in the window
    ),
    Scenario(
        "the delay never goes under the 0.2 s floor",
        crash_every(2, 1.5, 4),
        [R(0.2, 1)] * 4,
        {"period_s": 1},
        rng="min",
    ),
    Scenario(
        "custom base, factor and cap",
        crash_every(2, 1.5, 4),
        [R(1.5, 1), R(4.5, 1), R(10, 1), R(10, 1)],
        {"period_s": 1, "backoff_base_s": 0.5, "backoff_factor": 3, "backoff_cap_s": 10},
    ),
    # --- minimum uptime -------------------------------------------------------------------
    Scenario(
        "a run under the minimum uptime is a failed start",
        [(0, S), (0.5, X), (1, S), (3, X)],
        [R(0.4, 1, failed_start=True), R(0.8, 2, failed_start=False)],
    ),
    Scenario(
        "failed starts never reset the backoff",
        [(0, S), (0.3, X), (1, S), (1.3, X), (2, S), (2.3, X)],
        [R(0.4, 1, failed_start=True), R(0.8, 2, failed_start=True), R(1.6, 3, failed_start=True)],
    ),
    Scenario(
        "an exit without a start (spawn failed) is a failed start",
        [(0, X)],
        [R(0.4, 1, failed_start=True)],
    ),
    Scenario(
        "a crash loop of failed starts names the failed start in the reason",
        [(t, e) for k in range(4) for t, e in ((k, S), (k + 0.3, X))],
        [
            R(0.4, 1, failed_start=True),
            R(0.8, 2, failed_start=True),
            R(1.6, 3, failed_start=True),
            Reason(
                GiveUp,
                f"bridge exited 4 times in 60s (last: {BOOM}; failed to start: 0.3s after start, "
                "under the 1s minimum uptime)",
                exact=True,
            ),
        ],
    ),
    Scenario(
        "a custom minimum uptime",
        [(0, S), (4, X), (5, S), (11, X)],
        [R(0.4, 1, failed_start=True), R(0.8, 2, failed_start=False)],
        {"min_uptime_s": 5},
    ),
    # --- stability reset ------------------------------------------------------------------
    Scenario(
        "a run past the stability window resets backoff and intensity",
        [*crash_every(2, 1.5, 3), (6, S), (20, X)],
        [R(0.4, 1), R(0.8, 2), R(1.6, 3), R(0.4, 1)],
        {"stable_after_s": 10},
    ),
    Scenario(
        "without the stable run the same exit fails the child",
        [*crash_every(2, 1.5, 3), (6, S), (9, X)],
        [R(0.4, 1), R(0.8, 2), R(1.6, 3), Reason(GiveUp, "bridge exited 4 times in 60s")],
        {"stable_after_s": 10},
    ),
    Scenario(
        "runs past the minimum uptime but short of stable do not reset the backoff",
        crash_every(12, 10, 3),
        [R(0.4, 1), R(0.8, 1), R(1.6, 1)],
        {"period_s": 5, "stable_after_s": 30},
    ),
    Scenario(
        "a once-an-hour crash never exhausts the intensity",
        crash_every(3600, 3500, 6),
        [R(0.4, 1)] * 6,
    ),
    # --- daemon budget --------------------------------------------------------------------
    Scenario(
        "a spent daemon budget escalates",
        [(10, S), (15, X)],
        [
            Reason(
                Escalate,
                f"restart budget spent: 10 restarts in 60s (limit 10); bridge needs another (last: {BOOM})",
                exact=True,
            )
        ],
        budget=Budget(restarts=tuple(float(t) for t in range(10))),
    ),
    Scenario(
        "budget restarts older than its period do not count",
        [(70, S), (75, X)],
        [R(0.4, 1)],
        budget=Budget(restarts=tuple(float(t) for t in range(10))),
    ),
    Scenario(
        "the child's own restarts fill the budget",
        crash_every(5, 4, 3),
        [R(0.4, 1, of=5), R(0.8, 2, of=5), Reason(Escalate, "2 restarts in 60s (limit 2)")],
        {"intensity": 5},
        budget=Budget(limit=2),
    ),
    Scenario(
        "a child over its own intensity fails rather than escalating",
        [(0, S), (5, X)],
        [Reason(GiveUp, "bridge exited once in 60s")],
        {"intensity": 0},
        budget=Budget(limit=0),
    ),
    Scenario(
        "a normal exit that is not restarted does not touch the budget",
        [(0, S), (5, N)],
        [Stay()],
        budget=Budget(limit=0),
    ),
]


def run(scenario: Scenario) -> list[Decision]:
    spec = RestartSpec(name="bridge", **scenario.spec)
    rng: random.Random = MaxRandom() if scenario.rng == "max" else MinRandom()
    history, budget = ChildHistory(), scenario.budget
    decisions: list[Decision] = []
    for t, event in scenario.steps:
        if event[0] == "start":
            history = history.record_start(t)
            continue
        abnormal = event[1]
        detail = event[2] if len(event) > 2 else (BOOM if abnormal else "exit 0")
        history = history.record_exit(t, abnormal=abnormal, detail=detail)
        decision = decide(spec, history, budget, t, rng)
        if isinstance(decision, Restart):
            budget = budget.record(t)
        decisions.append(decision)
    return decisions


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.id)
def test_scenario(scenario: Scenario) -> None:
    decisions = run(scenario)
    assert len(decisions) == len(scenario.expected)
    for got, want in zip(decisions, scenario.expected, strict=True):
        if isinstance(want, Reason):
            assert isinstance(got, want.kind), got
            assert isinstance(got, GiveUp | Escalate)
            if want.exact:
                assert got.reason == want.text
            else:
                assert want.text in got.reason
        elif isinstance(want, Restart):
            assert isinstance(got, Restart), got
            assert got.delay_s == pytest.approx(want.delay_s)
            assert (got.attempt, got.of, got.failed_start) == (want.attempt, want.of, want.failed_start)
        else:
            assert got == want


@pytest.mark.parametrize("seed", [0, 1, 7, 42])
def test_jitter_stays_within_floor_and_ceiling_and_is_reproducible(seed: int) -> None:
    spec = RestartSpec(period_s=1)
    steps = crash_every(2, 1.5, 12)

    def delays(rng: random.Random) -> list[float]:
        history, out = ChildHistory(), []
        for t, event in steps:
            if event[0] == "start":
                history = history.record_start(t)
            else:
                history = history.record_exit(t, abnormal=True, detail=BOOM)
                decision = decide(spec, history, Budget(), t, rng)
                assert isinstance(decision, Restart)
                out.append(decision.delay_s)
        return out

    got = delays(random.Random(seed))
    ceilings = [min(30.0, 0.2 * 2**n) for n in range(1, 13)]
    assert all(0.2 <= d <= c for d, c in zip(got, ceilings, strict=True))
    assert got == delays(random.Random(seed))  # deterministic for a seed
    assert len(set(got)) == len(got)  # jittered: no two equal
    assert sum(d < c * 0.9 for d, c in zip(got, ceilings, strict=True)) >= 3  # not pinned to the ceiling


def test_jitter_spreads_children_that_crash_together() -> None:
    spec, rng = RestartSpec(), random.Random(3)
    history = ChildHistory().record_start(0).record_exit(5, abnormal=True, detail=BOOM)
    delays = [decide(spec, history, Budget(limit=100), 5, rng) for _ in range(50)]
    values = [d.delay_s for d in delays if isinstance(d, Restart)]
    assert len(values) == 50
    assert min(values) < 0.25 and max(values) > 0.35  # spread over [0.2, 0.4]


def test_detail_is_one_bounded_line_in_the_reason() -> None:
    spec = RestartSpec(name="bridge", intensity=0)
    detail = "exit code 1:\nTraceback (most recent call last):\n" + "x" * 1000
    history = ChildHistory().record_start(0).record_exit(5, abnormal=True, detail=detail)
    decision = decide(spec, history, Budget(), 5, random.Random(0))
    assert isinstance(decision, GiveUp)
    assert "\n" not in decision.reason
    assert "exit code 1: Traceback (most recent call last): xxx" in decision.reason
    assert len(decision.reason) < 400


def test_history_is_immutable_and_bounded() -> None:
    empty = ChildHistory()
    started = empty.record_start(1.0)
    exited = started.record_exit(3.5, abnormal=True, detail=BOOM)
    assert empty == ChildHistory() and started.started_at == 1.0 and started.exits == ()
    assert exited.started_at is None
    assert exited.exits[0].uptime_s == pytest.approx(2.5)
    many = empty
    for t in range(MAX_EXITS_KEPT + 10):
        many = many.record_exit(float(t), abnormal=True, detail=BOOM)
    assert len(many.exits) == MAX_EXITS_KEPT and many.exits[-1].at == MAX_EXITS_KEPT + 9


def test_counts_as_started_after_min_uptime() -> None:
    spec, history = RestartSpec(min_uptime_s=1), ChildHistory().record_start(10)
    assert not history.counts_as_started(spec, 10.9)
    assert history.counts_as_started(spec, 11.0)
    assert not ChildHistory().counts_as_started(spec, 100)
    assert history.uptime_s(12.5) == pytest.approx(2.5)


def test_decide_without_an_exit_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="record_exit"):
        decide(RestartSpec(), ChildHistory().record_start(0), Budget(), 1, random.Random(0))


@pytest.mark.parametrize(
    ("field_name", "value"),
    [
        ("intensity", -1),
        ("intensity", MAX_EXITS_KEPT),
        ("period_s", 0),
        ("backoff_base_s", 0),
        ("backoff_factor", 0.5),
        ("backoff_cap_s", 0.1),
        ("min_uptime_s", -1),
        ("stable_after_s", 0.5),
    ],
)
def test_spec_validation_names_the_field(field_name: str, value: float) -> None:
    kwargs: dict[str, Any] = {field_name: value}
    with pytest.raises(ValueError, match=field_name):
        RestartSpec(**kwargs)


def test_budget_prunes_and_counts() -> None:
    budget = Budget(limit=2, period_s=10)
    budget = budget.record(0).record(5)
    assert budget.used(5) == 2 and budget.exhausted(5)
    assert budget.used(10) == 1 and not budget.exhausted(10)
    assert budget.record(16).restarts == (16,)
    with pytest.raises(ValueError):
        Budget(limit=-1)


def test_clocks() -> None:
    manual = ManualClock(5.0)
    manual.advance(1.5)
    clocks: list[Clock] = [manual, SystemClock()]
    assert clocks[0].monotonic() == 6.5
    first = clocks[1].monotonic()
    assert clocks[1].monotonic() >= first
