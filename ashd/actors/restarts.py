"""The restart governor: ashd/policy.py's pure decisions, with one restart budget per tenant.

Shared by every SessionActor (each keeps its own ChildHistory). The budget is per tenant, not
daemon-wide: one tenant's crash loop (or burst) pauses that tenant's restarts only, never
another tenant's creates (issue #18). A start that failed only because it was slow (its
readiness timeout passed: the host is busy) is judged by the session's own intensity but is
not charged to any budget: load is not a crash. The budgets are the only shared state and are
guarded by a lock. Thread-safe; never blocks beyond the lock.
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
        self._empty = Budget(limit=config.budget_limit, period_s=config.budget_period_s)
        self._budgets: dict[str, Budget] = {}  # tenant id -> its budget (tenants with recent restarts only)
        self._lock = threading.Lock()
        self._metrics = metrics or Metrics()
        self.restarts = 0
        self.give_ups = 0
        self.escalations = 0

    def budget_spent(self, tenant_id: str | None = None) -> bool:
        """True while ``tenant_id``'s restart budget has no room (its restarts are refused);
        without a tenant: while any tenant's has none (for /health)."""
        with self._lock:
            now = self._clock.monotonic()
            if tenant_id is not None:
                return self._budgets.get(tenant_id, self._empty).exhausted(now)
            return any(budget.exhausted(now) for budget in self._budgets.values())

    def now(self) -> float:
        return self._clock.monotonic()

    def decide(self, history: ChildHistory, tenant_id: str, charge: bool = True) -> Decision:
        """What to do after the child's last exit. A Restart is charged to ``tenant_id``'s
        budget unless ``charge`` is False (a start that was only slow: not a crash)."""
        with self._lock:
            now = self._clock.monotonic()
            budget = self._budgets.get(tenant_id, self._empty) if charge else self._empty
            decision = decide(self.spec, history, budget, now, self._rng)
            if isinstance(decision, Restart):
                if charge:
                    self._budgets[tenant_id] = budget.record(now)
                    self._forget_quiet(now)
                self.restarts += 1
                self._metrics.agent_restarts.inc()
            elif isinstance(decision, GiveUp):
                self.give_ups += 1
                self._metrics.agent_give_ups.inc()
            elif isinstance(decision, Escalate):
                self.escalations += 1
                self._metrics.agent_give_ups.inc()  # the session goes to error all the same
                log.critical("restart budget of tenant %s exhausted: %s", tenant_id, decision.reason)
            return decision

    def _forget_quiet(self, now: float) -> None:
        """Drop the budgets of tenants with no restart in their window (bounded memory)."""
        for tenant in [t for t, b in self._budgets.items() if b.used(now) == 0]:
            del self._budgets[tenant]
