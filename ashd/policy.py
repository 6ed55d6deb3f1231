"""Restart policy for supervised children, as pure functions with an injected clock.

A supervisor keeps one immutable :class:`ChildHistory` per child and a :class:`Budget`
shared by a group of children (the root's whole tree; the agent processes of one tenant).
When a child exits it records the exit and asks :func:`decide`, then performs the side
effect the :class:`Decision` names. Nothing here reads the time, sleeps, starts
threads or does I/O; callers pass ``now`` from a :class:`Clock` and a seeded ``random.Random``.

The rules, in the order :func:`decide` applies them:

1. **Restart type** (OTP): ``permanent`` children are restarted after any exit, ``transient``
   ones only after an abnormal exit, ``temporary`` ones never. A normal exit that is not
   restarted is :class:`Stay`; an abnormal exit of a temporary child is :class:`GiveUp`
   (terminal ``failed``, with the reason), because nothing will bring it back.
2. **Intensity** (OTP ``intensity``/``period``): the exits that would be restarted are counted
   in a sliding window of ``period_s``. Up to ``intensity`` restarts are allowed; the exit
   that would make one more is :class:`GiveUp`. Default 3 in 60 s, so the 4th exit within a
   minute fails the child.
3. **Budget**: if ``budget`` (the group's) already holds ``limit`` restarts of any child in its
   window, the restart is refused with :class:`Escalate` (default 10 in 60 s).
4. Otherwise :class:`Restart` after a backoff delay.

**Minimum uptime** (supervisord ``startsecs``): a run shorter than ``min_uptime_s`` is a
failed start (``Restart.failed_start``, and the ``GiveUp`` reason says so). Like every run
shorter than the stability window it does not reset the backoff.

**Stability reset**: a run that lasted ``stable_after_s`` or longer proves the child healthy,
so its exit starts a new series: earlier exits no longer count towards the intensity or the
backoff. A child crashing once an hour therefore never exhausts its intensity.

**Backoff: full jitter with a floor.** The n-th consecutive restart of a series waits
``uniform(base, min(cap, base * factor**n))`` seconds: 0.2-0.4 s, 0.2-0.8 s, 0.2-1.6 s, ...,
0.2-30 s with the defaults. Full jitter (rather than equal jitter) spreads children that
crashed together, e.g. every bridge when the model API drops, across the whole interval
(supervisor#1640: synchronised restarts cause load spikes); the floor keeps a restart from
ever being immediate. Decorrelated jitter was not chosen: its delay depends on the previous
random delay, so the history would have to carry it and an operator could not be told "the
n-th retry waits at most X".
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Protocol

MAX_EXITS_KEPT = 64  # exits remembered per child; bounds memory, far above any sane intensity
_DETAIL_MAX = 300


class Clock(Protocol):
    """Monotonic seconds. The only source of ``now`` for the policy's callers."""

    def monotonic(self) -> float: ...


class SystemClock:
    """The real clock: ``time.monotonic()``. Thread-safe."""

    def monotonic(self) -> float:
        return time.monotonic()


@dataclass
class ManualClock:
    """A clock that moves only when told; for tests of the actors that use the policy."""

    now: float = 0.0

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RestartType(StrEnum):
    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


@dataclass(frozen=True)
class RestartSpec:
    """How one kind of child is restarted. Raises ValueError naming the bad field."""

    name: str = "child"  # how reasons name the child: "bridge", "sandbox", ...
    type: RestartType = RestartType.TRANSIENT
    intensity: int = 3
    period_s: float = 60.0
    backoff_base_s: float = 0.2
    backoff_factor: float = 2.0
    backoff_cap_s: float = 30.0
    min_uptime_s: float = 1.0
    stable_after_s: float = 60.0

    def __post_init__(self) -> None:
        checks = [
            ("intensity", 0 <= self.intensity < MAX_EXITS_KEPT, f"0..{MAX_EXITS_KEPT - 1}"),
            ("period_s", self.period_s > 0, "> 0"),
            ("backoff_base_s", self.backoff_base_s > 0, "> 0"),
            ("backoff_factor", self.backoff_factor >= 1, ">= 1"),
            ("backoff_cap_s", self.backoff_cap_s >= self.backoff_base_s, ">= backoff_base_s"),
            ("min_uptime_s", self.min_uptime_s >= 0, ">= 0"),
            ("stable_after_s", self.stable_after_s >= self.min_uptime_s, ">= min_uptime_s"),
        ]
        for key, ok, rule in checks:
            if not ok:
                raise ValueError(f"restart policy {key} must be {rule}, got {getattr(self, key)!r}")

    def backoff_ceiling(self, n: int) -> float:
        """Upper bound of the delay before the n-th consecutive restart of a series (n >= 1)."""
        ceiling = self.backoff_base_s
        for _ in range(min(n, MAX_EXITS_KEPT)):  # a loop, not factor**n: no float overflow
            ceiling = min(self.backoff_cap_s, ceiling * self.backoff_factor)
        return ceiling


@dataclass(frozen=True)
class Exit:
    """One past exit: when, after how long a run, whether abnormal, and what the operator saw."""

    at: float
    uptime_s: float
    abnormal: bool
    detail: str


@dataclass(frozen=True)
class ChildHistory:
    """What the policy remembers about one child. Immutable: every ``record_*`` returns a new one."""

    started_at: float | None = None
    exits: tuple[Exit, ...] = ()

    def record_start(self, now: float) -> ChildHistory:
        """The child was started (or became ready: the caller picks, consistently)."""
        return replace(self, started_at=now)

    def record_exit(self, now: float, abnormal: bool, detail: str) -> ChildHistory:
        """The child exited. ``detail`` is for operators, e.g. ``"exit code 1: <last log line>"``.

        An exit without a recorded start (the spawn itself failed) has an uptime of 0.
        """
        uptime = 0.0 if self.started_at is None else max(0.0, now - self.started_at)
        exit_ = Exit(at=now, uptime_s=uptime, abnormal=abnormal, detail=_one_line(detail))
        return ChildHistory(started_at=None, exits=(*self.exits, exit_)[-MAX_EXITS_KEPT:])

    def uptime_s(self, now: float) -> float:
        """Seconds since the current start; 0 when the child is not running."""
        return 0.0 if self.started_at is None else max(0.0, now - self.started_at)

    def counts_as_started(self, spec: RestartSpec, now: float) -> bool:
        """True once the current run has lasted ``min_uptime_s`` (supervisord: STARTING -> RUNNING)."""
        return self.started_at is not None and self.uptime_s(now) >= spec.min_uptime_s


@dataclass(frozen=True)
class Budget:
    """A restart budget shared by a group of children. Immutable; keep one per group, in one place."""

    limit: int = 10
    period_s: float = 60.0
    restarts: tuple[float, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.limit < 0 or self.period_s <= 0:
            raise ValueError(f"restart budget must have limit >= 0 and period_s > 0, got {self}")

    def used(self, now: float) -> int:
        """Restarts inside the window ending at ``now``."""
        return sum(1 for t in self.restarts if now - t < self.period_s)

    def exhausted(self, now: float) -> bool:
        return self.used(now) >= self.limit

    def record(self, now: float) -> Budget:
        """A restart was performed at ``now``; old entries are dropped."""
        kept = tuple(t for t in self.restarts if now - t < self.period_s)
        return replace(self, restarts=(*kept, now))


@dataclass(frozen=True)
class Restart:
    """Restart the child after ``delay_s``; this is restart ``attempt`` of ``of`` allowed per period."""

    delay_s: float
    attempt: int
    of: int
    failed_start: bool = False


@dataclass(frozen=True)
class GiveUp:
    """Do not restart: the child is ``failed``. ``reason`` is one sentence for the operator."""

    reason: str


@dataclass(frozen=True)
class Stay:
    """Do not restart: the exit was normal and the restart type does not restart it."""


@dataclass(frozen=True)
class Escalate:
    """The daemon-level budget is spent: the supervisor must escalate to its parent."""

    reason: str


Decision = Restart | GiveUp | Stay | Escalate


def decide(spec: RestartSpec, history: ChildHistory, budget: Budget, now: float, rng: random.Random) -> Decision:
    """What to do about the child's last exit. Pure; raises ValueError if no exit is recorded.

    On :class:`Restart` the caller must also record it: ``budget = budget.record(now)``.
    """
    if not history.exits:
        raise ValueError("decide() needs an exit: call history.record_exit() first")
    last = history.exits[-1]
    if spec.type is RestartType.TEMPORARY and last.abnormal:
        return GiveUp(f"{spec.name} is temporary and is not restarted (last: {_describe(spec, last)})")
    if spec.type is not RestartType.PERMANENT and not last.abnormal:
        return Stay()
    series = _series(spec, history.exits)
    in_window = [e for e in series if now - e.at < spec.period_s]
    if len(in_window) > spec.intensity:
        return GiveUp(
            f"{spec.name} exited {_times(len(in_window))} in {spec.period_s:g}s "
            f"(last: {_describe(spec, last)})"
        )
    if budget.exhausted(now):
        return Escalate(
            f"restart budget spent: {budget.used(now)} restarts in {budget.period_s:g}s "
            f"(limit {budget.limit}); {spec.name} needs another (last: {_describe(spec, last)})"
        )
    delay = rng.uniform(spec.backoff_base_s, spec.backoff_ceiling(len(series)))
    return Restart(
        delay_s=delay,
        attempt=len(in_window),
        of=spec.intensity,
        failed_start=last.uptime_s < spec.min_uptime_s,
    )


def _series(spec: RestartSpec, exits: tuple[Exit, ...]) -> list[Exit]:
    """Exits since the last stable run (inclusive) that the restart type would restart."""
    start = 0
    for i in range(len(exits) - 1, -1, -1):
        if exits[i].uptime_s >= spec.stable_after_s:
            start = i
            break
    restarts_all = spec.type is RestartType.PERMANENT
    return [e for e in exits[start:] if restarts_all or e.abnormal]


def _describe(spec: RestartSpec, exit_: Exit) -> str:
    if exit_.uptime_s < spec.min_uptime_s:
        return (
            f"{exit_.detail}; failed to start: {exit_.uptime_s:.1f}s after start, "
            f"under the {spec.min_uptime_s:g}s minimum uptime"
        )
    return exit_.detail


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def _one_line(detail: str) -> str:
    flat = " ".join(detail.split()) or "no detail"
    return flat if len(flat) <= _DETAIL_MAX else flat[: _DETAIL_MAX - 3] + "..."
