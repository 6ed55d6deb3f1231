"""Whether ashd can serve sessions: sandbox starts recorded, then judged as ok or degraded.

Rules (docs/operations.md, "Health, liveness and readiness"):

- **degraded** while the last ``degraded_after`` sandbox starts in a row failed, or while the
  restart budget of a tenant is spent (restarts are paused). The reason says which; the last
  failure (when, which session, why) is kept for operators.
- **ok** again after the next successful start (and once the budget has room again).

:class:`StartRecord` is shared by every SessionActor thread (a lock guards it; calls never
block beyond it). :func:`judge` is pure.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from ashd.store.timestamps import utc_now

OK, DEGRADED = "ok", "degraded"


@dataclass(frozen=True)
class StartFailure:
    at: str  # ISO-8601 UTC
    tenant_id: str  # whose session it was: only that tenant sees the details (tenants are hostile)
    session_id: str
    reason: str

    def to_json(self, tenant_id: str) -> dict[str, str]:
        """Ash-style JSON for a caller of ``tenant_id``: another tenant's failure shows only when."""
        if tenant_id != self.tenant_id:
            return {"at": self.at, "reason": "a sandbox start of another tenant failed"}
        first_line = self.reason.strip().splitlines()[0] if self.reason.strip() else "unknown"
        return {"at": self.at, "sessionId": self.session_id, "reason": first_line[:500]}


@dataclass(frozen=True)
class Verdict:
    status: str  # OK or DEGRADED
    reason: str | None = None
    last_failure: StartFailure | None = None


def judge(failed_in_a_row: int, degraded_after: int, budget_spent: bool,
          last_failure: StartFailure | None) -> Verdict:
    """The health of sandbox starts from what was recorded. Pure."""
    if budget_spent:
        return Verdict(DEGRADED, "a tenant's restart budget is spent: its agent process restarts are paused",
                       last_failure)
    if failed_in_a_row >= degraded_after:
        return Verdict(DEGRADED, f"the last {failed_in_a_row} sandbox starts failed", last_failure)
    return Verdict(OK, None, last_failure)


class StartRecord:
    """Counts sandbox starts in a row that failed; thread-safe."""

    def __init__(self, degraded_after: int = 3, budget_spent: Callable[[], bool] | None = None,
                 clock: Callable[[], str] = utc_now) -> None:
        self._degraded_after = degraded_after
        self._budget_spent = budget_spent or (lambda: False)
        self._clock = clock
        self._lock = threading.Lock()
        self._failed_in_a_row = 0
        self._last_failure: StartFailure | None = None

    def started(self) -> None:
        """A sandbox became ready."""
        with self._lock:
            self._failed_in_a_row = 0

    def failed(self, tenant_id: str, session_id: str, reason: str) -> None:
        """A sandbox start failed (set-up failed, or the agent process never became ready)."""
        with self._lock:
            self._failed_in_a_row += 1
            self._last_failure = StartFailure(self._clock(), tenant_id, session_id, reason)

    def verdict(self) -> Verdict:
        with self._lock:
            failed, last = self._failed_in_a_row, self._last_failure
        return judge(failed, self._degraded_after, self._budget_spent(), last)


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str | None = None


def readiness(tree_answered: bool, stopping: bool, deadline_s: float) -> Readiness:
    """Can this daemon take sessions now? Pure. (Degraded starts do not make it unready:
    live sessions still serve, and restarting ashd would not mend a broken agent CLI.)"""
    if stopping:
        return Readiness(False, "ashd is shutting down")
    if not tree_answered:
        return Readiness(False, f"the actor tree did not answer a ping within {deadline_s:.0f}s")
    return Readiness(True)
