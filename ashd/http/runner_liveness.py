"""The coordinators' liveness sweep of the runner registry (docs/scale-out.md).

Every :func:`sweep_period` seconds (a fraction of ``cluster.liveness_timeout_s``, at most
:data:`MAX_PERIOD_S`, plus up to a quarter of it in jitter so coordinators do not sweep in
step), runners not heard from within the timeout are removed and their live sessions
paused (``runner_queries.sweep``: one transaction, idempotent; several coordinators sweep
the same registry without a leader). One warning per runner lost; ``ashd_runners{state}``
and ``ashd_runners_lost`` in /metrics. Loop thread; the store work runs on the writer thread.
"""

from __future__ import annotations

import logging
import random

from ashd.config import ClusterConfig
from ashd.loop_task import PeriodicTask
from ashd.metrics import Metrics
from ashd.runtime.offload import Offload
from ashd.store import RunnerRow, Store
from ashd.store import runner_queries as rq

log = logging.getLogger(__name__)

MIN_PERIOD_S = 0.25
MAX_PERIOD_S = 5.0


def sweep_period(liveness_timeout_s: float, rng: random.Random) -> float:
    """Pure: seconds to the next sweep: a quarter of the timeout within bounds, plus jitter."""
    base = min(MAX_PERIOD_S, max(MIN_PERIOD_S, liveness_timeout_s / 4))
    return base + rng.uniform(0, base / 4)


class RunnerLiveness(PeriodicTask):
    failure = "runner liveness sweep failed"

    def __init__(self, store: Store, offload: Offload, cluster: ClusterConfig, metrics: Metrics,
                 rng: random.Random | None = None) -> None:
        self._store = store
        self._offload = offload
        self._timeout = cluster.liveness_timeout_s
        self._metrics = metrics
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography

    def period(self) -> float:
        return sweep_period(self._timeout, self._rng)

    async def sweep(self) -> dict[str, list[str]]:
        """Remove the runners past the timeout (their live sessions paused). Dead id -> sessions paused."""
        dead, live = await self._offload.write(self._sweep)
        for runner_id, paused in dead.items():
            self._metrics.runners_lost.inc()
            log.warning("runner %s sent no heartbeat for over %g s: removed from the registry; %d live "
                        "session(s) paused%s (resumable on another runner)", runner_id, self._timeout, len(paused),
                        f": {', '.join(paused)}" if paused else "")
        self._metrics.runners.labels("live").set(sum(1 for r in live if not r.draining))
        self._metrics.runners.labels("draining").set(sum(1 for r in live if r.draining))
        return dead

    def _sweep(self) -> tuple[dict[str, list[str]], list[RunnerRow]]:
        """Blocking: the writer thread."""
        cutoff = rq.cutoff(self._store.now(), self._timeout)
        return self._store.write_with(rq.sweep, cutoff), self._store.read_with(rq.live, cutoff)
