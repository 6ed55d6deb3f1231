"""RootSupervisor: starts its children in order with a ping barrier, restarts the one that
crashed (rest_for_one) under the pure restart policy, and gives up by asking ashd to exit.

Children (see :class:`~ashd.actors.children.ChildSpec`) start in list order; each must
answer a ping before the next starts; they stop in reverse. A child that crashes tells the
root (``child_crashed``, from its ``on_failure``, after its own cleanup). The root records
the exit in that child's :class:`~ashd.policy.ChildHistory` and asks
:class:`TreePolicy`:

- **Restart** after the backoff (a timer tells the root; its mailbox never sleeps): the
  restartable children started after the crashed one are stopped in reverse, then the
  crashed one and they start again in order, each a NEW actor (pykka cannot restart one),
  and the registry names the new ones.
- **GiveUp** (the child's intensity is exceeded) or **Escalate** (the root's budget is
  spent): the root gives up; ``on_give_up(reason)`` makes ashd stop and exit non-zero, so
  systemd's ``Restart=on-failure`` starts it afresh. The watchdog stops pinging at once.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pykka

from ashd.actors.children import ChildRegistry, ChildSpec, SupervisionRecord
from ashd.actors.faults import crash_detail
from ashd.actors.tell import tell
from ashd.config import SupervisionConfig
from ashd.policy import (
    Budget,
    ChildHistory,
    Clock,
    Decision,
    Escalate,
    GiveUp,
    Restart,
    RestartSpec,
    RestartType,
    SystemClock,
    decide,
)

log = logging.getLogger(__name__)

PING_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 30.0
CLEANUP_TIMEOUT_S = 90.0  # a crashed child's on_failure (e.g. the pool stopping every bridge)


class ChildStartFailed(Exception):
    """A child did not start or did not answer its first ping."""


@dataclass
class TreePolicy:
    """Restart decisions of one supervisor: one history per child, one budget per group of
    children (the root: one group; the session supervisor: one per tenant). Used on the
    supervisor's own thread only.

    A spent budget escalates once ``escalate_at`` groups have spent theirs in the window; a
    group that spends its budget before that gives up on the child that crashed (the session
    supervisor: one tenant's crash loop fails that tenant's crashing sessions, never the
    supervisor and so every tenant's sessions)."""

    spec: RestartSpec
    budget: Budget  # the empty budget every group starts with
    clock: Clock = field(default_factory=SystemClock)
    rng: random.Random = field(default_factory=random.Random)
    histories: dict[str, ChildHistory] = field(default_factory=dict)
    escalate_at: int = 1  # groups with a spent budget that make a spent budget escalate
    budgets: dict[str, Budget] = field(default_factory=dict)  # group -> its budget (recent restarts only)

    @classmethod
    def from_config(cls, config: SupervisionConfig, clock: Clock | None = None,
                    rng: random.Random | None = None) -> TreePolicy:
        spec = RestartSpec(name="tree child", type=RestartType.PERMANENT, intensity=config.tree_intensity,
                           period_s=config.tree_period_s, backoff_base_s=config.backoff_base_s,
                           backoff_cap_s=config.backoff_cap_s, min_uptime_s=0.0,
                           stable_after_s=config.stable_after_s)
        return cls(spec, Budget(config.tree_budget_limit, config.tree_period_s), clock or SystemClock(),
                   rng or random.Random())  # noqa: S311 - jitter, not cryptography

    def started(self, name: str) -> None:
        self.histories[name] = self.histories.get(name, ChildHistory()).record_start(self.clock.monotonic())

    @classmethod
    def for_sessions(cls, config: SupervisionConfig, clock: Clock | None = None) -> TreePolicy:
        """Session actors: transient, ``session_intensity`` crashes per ``period_s`` each; a
        budget of ``budget_limit`` restarts per ``budget_period_s`` per tenant. Crash loops of
        two tenants at once escalate (the fault is then ashd's, not one tenant's)."""
        spec = RestartSpec(name="session actor", type=RestartType.TRANSIENT, intensity=config.session_intensity,
                           period_s=config.period_s, min_uptime_s=0.0, stable_after_s=config.stable_after_s)
        return cls(spec, Budget(config.budget_limit, config.budget_period_s), clock or SystemClock(), escalate_at=2)

    def forget(self, name: str) -> None:
        self.histories.pop(name, None)

    def crashed(self, name: str, detail: str, group: str = "") -> Decision:
        """Record the crash and decide; a Restart is charged to ``group``'s budget."""
        now = self.clock.monotonic()
        history = self.histories.get(name, ChildHistory()).record_exit(now, True, f"{name}: {detail}")
        self.histories[name] = history
        budget = self.budgets.get(group, self.budget)
        decision = decide(self.spec, history, budget, now, self.rng)
        if isinstance(decision, Restart):
            self.budgets[group] = budget.record(now)
            for quiet in [g for g, b in self.budgets.items() if b.used(now) == 0]:
                del self.budgets[quiet]  # bounded: only groups with restarts in their window
        elif isinstance(decision, Escalate) and self._spent(now) < self.escalate_at:
            return GiveUp(f"{decision.reason} (the budget of {group or 'this group'} alone)")
        return decision

    def _spent(self, now: float) -> int:
        return sum(1 for b in self.budgets.values() if b.exhausted(now))


def start_root(children: Sequence[ChildSpec], registry: ChildRegistry, record: SupervisionRecord,
               policy: TreePolicy, on_give_up: Callable[[str], object],
               timeout_s: float) -> pykka.ActorRef[RootSupervisor]:
    """A root over ``children``, each started and answering its ping in order. Blocking; on a
    failure what started is stopped and ChildStartFailed (or the timeout) raised."""
    root = RootSupervisor.start(children, registry, record, policy, on_give_up)
    try:
        root.proxy().start_children().get(timeout=timeout_s)
    except Exception:
        root.stop(timeout=STOP_TIMEOUT_S * 3)
        raise
    return root


class RootSupervisor(pykka.ThreadingActor):
    """rest_for_one over its children; see the module docstring. Build with :meth:`start`,
    then ask :meth:`start_children` (raises ChildStartFailed after stopping what started)."""

    def __init__(self, children: Sequence[ChildSpec], registry: ChildRegistry, record: SupervisionRecord,
                 policy: TreePolicy, on_give_up: Callable[[str], object]) -> None:
        super().__init__()
        self._children = list(children)
        self._registry = registry
        self._record = record
        self._policy = policy
        self._on_give_up = on_give_up
        self._generation: dict[str, int] = {}
        self._down: set[str] = set()  # crashed children waiting for their restart
        # Set once the child's current generation reported a crash, i.e. finished its cleanup.
        self._cleaned: dict[str, threading.Event] = {}
        self._stopping = False
        self._timers: list[threading.Timer] = []

    def start_children(self) -> None:
        for index in range(len(self._children)):
            try:
                self._start(index)
            except ChildStartFailed:
                self._stop_from(0)
                raise
        log.info("supervision tree started: %s", " -> ".join(c.name for c in self._children))

    def child_crashed(self, name: str, generation: int, detail: str) -> None:
        """Told by a child that died of an exception (after its own cleanup)."""
        if self._stopping or self._record.gave_up or self._generation.get(name) != generation:
            return  # a stale report (an older generation), or nothing to restart any more
        if name in self._down:
            return  # this crash is handled already (reported by the child and by a failed ping)
        self._down.add(name)
        decision = self._policy.crashed(name, detail)
        if isinstance(decision, Restart):
            log.error("%s crashed (%s); restarting it in %.1fs (restart %d of %d allowed)", name, detail,
                      decision.delay_s, decision.attempt, decision.of)
            self._later(decision.delay_s, name, generation)
        elif isinstance(decision, GiveUp | Escalate):
            self._record.failed(name, decision.reason)
            self._give_up(f"{name} crashed too often: {decision.reason}")

    def restart(self, name: str, generation: int) -> None:
        """rest_for_one: stop the restartable children after ``name`` (in reverse), start
        ``name`` and them again in order. Told by the backoff timer."""
        if self._stopping or self._record.gave_up or self._generation.get(name) != generation:
            return
        self._down.discard(name)
        index = self._index(name)
        later = [i for i in range(index + 1, len(self._children)) if self._children[i].restartable]
        for i in reversed(later):
            self._stop_one(i)
        for i in (index, *later):
            child = self._children[i]
            try:
                self._start(i)
            except ChildStartFailed as exc:
                self._stop_one(i)
                tell(self.actor_ref.proxy().child_crashed, child.name, self._generation[child.name], str(exc),
                     context=f"restart of {child.name} failed")
                return
            self._record.restarted(child.name)
        log.warning("%s restarted%s", name,
                    f" with {', '.join(self._children[i].name for i in later)}" if later else "")

    def on_stop(self) -> None:
        self._stopping = True
        for timer in self._timers:
            timer.cancel()
        self._stop_from(0)
        log.info("supervision tree stopped")

    # -- internals ---------------------------------------------------------

    def _start(self, index: int) -> None:
        child = self._children[index]
        generation = self._generation.get(child.name, 0) + 1
        self._generation[child.name] = generation
        me = self.actor_ref.proxy()
        cleaned = self._cleaned[child.name] = threading.Event()

        def crashed(detail: str) -> object:
            cleaned.set()
            return tell(me.child_crashed, child.name, generation, detail, context=f"crash report of {child.name}")

        try:
            handle = child.start(crashed)
        except Exception as exc:  # boundary: any start failure is the child's failure
            raise ChildStartFailed(f"{child.name} did not start: {crash_detail(exc)}") from exc
        self._registry.put(child.name, handle)
        if not child.ping(handle, PING_TIMEOUT_S):
            raise ChildStartFailed(f"{child.name} did not answer a ping within {PING_TIMEOUT_S:.0f}s after start")
        self._policy.started(child.name)

    def _stop_from(self, first: int) -> None:
        for index in reversed(range(first, len(self._children))):
            self._stop_one(index)

    def _stop_one(self, index: int) -> None:
        child = self._children[index]
        handle = self._registry.remove(child.name)
        if handle is None:
            return  # never started, or stopped already
        try:
            stopped_now = child.stop(handle, STOP_TIMEOUT_S)
        except Exception:  # boundary: stopping goes on for the others
            log.exception("%s did not stop cleanly", child.name)
            return
        # Stopped already: it crashed. Its on_failure may still be cleaning up (the pool
        # stopping its bridges); what stops after it (the store, the sandbox services) waits.
        cleaned = self._cleaned.get(child.name)
        if not stopped_now and cleaned is not None and not cleaned.wait(CLEANUP_TIMEOUT_S):
            log.error("%s crashed and did not finish its cleanup within %.0fs", child.name, CLEANUP_TIMEOUT_S)

    def _index(self, name: str) -> int:
        return next(i for i, c in enumerate(self._children) if c.name == name)

    def _later(self, delay_s: float, name: str, generation: int) -> None:
        me = self.actor_ref.proxy()
        timer = threading.Timer(delay_s, lambda: tell(me.restart, name, generation, context=f"restart of {name}"))
        timer.daemon = True
        self._timers = [t for t in self._timers if t.is_alive()] + [timer]
        timer.start()

    def _give_up(self, reason: str) -> None:
        log.critical("supervision tree gives up: %s; ashd exits so that its service manager restarts it", reason)
        self._record.give_up(reason)
        self._on_give_up(reason)

