"""The restart governor: ashd/policy.py's pure decisions, with one daemon-wide budget.

Shared by every SessionActor (each keeps its own ChildHistory); the budget is the only
shared state and is guarded by a lock. Thread-safe; never blocks beyond the lock.
"""

from __future__ import annotations

import logging
import random
import threading

from ashd.config import SupervisionConfig
from ashd.metrics import Metrics
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


class RestartGovernor:
    def __init__(self, config: SupervisionConfig, clock: Clock | None = None, rng: random.Random | None = None,
                 metrics: Metrics | None = None) -> None:
        self.spec = RestartSpec(
            name="agent process", type=RestartType.TRANSIENT, intensity=config.intensity,
            period_s=config.period_s, backoff_base_s=config.backoff_base_s, backoff_cap_s=config.backoff_cap_s,
            min_uptime_s=config.min_uptime_s, stable_after_s=config.stable_after_s,
        )
        self._clock = clock or SystemClock()
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._budget = Budget(limit=config.budget_limit, period_s=config.budget_period_s)
        self._lock = threading.Lock()
        self._metrics = metrics or Metrics()
        self.restarts = 0
        self.give_ups = 0
        self.escalations = 0

    def budget_spent(self) -> bool:
        """True while ashd's restart budget has no room (restarts are being refused)."""
        with self._lock:
            return self._budget.exhausted(self._clock.monotonic())

    def now(self) -> float:
        return self._clock.monotonic()

    def decide(self, history: ChildHistory) -> Decision:
        """What to do after the child's last exit; a Restart is charged to the daemon budget."""
        with self._lock:
            now = self._clock.monotonic()
            decision = decide(self.spec, history, self._budget, now, self._rng)
            if isinstance(decision, Restart):
                self._budget = self._budget.record(now)
                self.restarts += 1
                self._metrics.agent_restarts.inc()
            elif isinstance(decision, GiveUp):
                self.give_ups += 1
                self._metrics.agent_give_ups.inc()
            elif isinstance(decision, Escalate):
                self.escalations += 1
                self._metrics.agent_give_ups.inc()  # the session goes to error all the same
                log.critical("restart budget of ashd exhausted: %s", decision.reason)
            return decision
