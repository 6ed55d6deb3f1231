"""Recovering the eval runs and queued prompts of coordinators that are gone (Postgres).

At start (before serving) and then every :func:`~ashd.http.runner_liveness.sweep_period`
seconds, eval runs left ``running`` and queue items left ``processing`` by a coordinator that
no longer holds its liveness lock are marked ``interrupted`` / requeued
(``ashd/store/recovery.py``, ``ashd/store/coordinators.py``); work a live coordinator holds is
never touched. Each pass also checks this daemon's own lock (a lost connection takes it again).
On SQLite the daemon recovers everything once at start and runs no periodic pass.
Loop thread; the store work runs on the writer thread.
"""

from __future__ import annotations

import functools
import logging
import random

from ashd.http.runner_liveness import sweep_period
from ashd.loop_task import PeriodicTask
from ashd.runtime.offload import Offload
from ashd.store import Store
from ashd.store.coordinators import CoordinatorLock
from ashd.store.recovery import Recovered, recover_claimed_work

log = logging.getLogger(__name__)


def report(found: Recovered, me: str) -> None:
    """One operator sentence per coordinator whose work was recovered."""
    for owner, (runs, items) in found.by_owner.items():
        whose = ("a previous run of ashd" if owner in (None, me) else f"coordinator {owner}, which is gone")
        log.warning("recovered the work of %s: %d eval run(s) marked interrupted, %d queued prompt(s) pending again",
                    whose, runs, items)


class WorkRecovery(PeriodicTask):
    failure = "recovery of gone coordinators' work failed"

    def __init__(self, store: Store, offload: Offload, lock: CoordinatorLock, liveness_timeout_s: float,
                 rng: random.Random | None = None) -> None:
        self._store = store
        self._offload = offload
        self._lock = lock
        self._timeout = liveness_timeout_s
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography

    def period(self) -> float:
        return sweep_period(self._timeout, self._rng)

    async def sweep(self) -> Recovered:
        """Check our lock, then recover what gone coordinators claimed."""
        me = self._lock.coordinator_id
        if not await self._offload.read(self._lock.check):
            return Recovered({})  # without our own lock we cannot tell who is gone safely
        found = await self._offload.write(functools.partial(recover_claimed_work, self._store, me, starting=False))
        report(found, me)
        return found
