"""Pure parts of scale-out: the liveness sweep's period and a runner's load from its pool."""

from __future__ import annotations

import random

from ashd.actors.messages import PoolStats
from ashd.http.runner_liveness import MAX_PERIOD_S, MIN_PERIOD_S, sweep_period
from ashd.modes import pool_figures


def test_the_sweep_runs_a_few_times_per_timeout_with_jitter_within_bounds() -> None:
    rng = random.Random(7)
    periods = [sweep_period(30.0, rng) for _ in range(200)]
    assert all(MAX_PERIOD_S <= p <= MAX_PERIOD_S * 1.25 for p in periods)  # Ash sweeps every 30-35 s
    assert len({round(p, 3) for p in periods}) > 100  # coordinators do not sweep in step
    assert all(0.75 <= sweep_period(3.0, rng) <= 0.75 * 1.25 for _ in range(50))
    assert sweep_period(0.1, rng) >= MIN_PERIOD_S


def test_a_runners_load_counts_live_sandboxes_and_starting_ones_apart() -> None:
    stats = PoolStats(total=7, warming=2, warm=3, running=1, waiting=0, cold=1, max_capacity=10)
    figures = pool_figures(stats)
    assert (figures.active, figures.warming) == (4, 2)
    assert figures.stats == {"total": 7, "cold": 1, "warming": 2, "warm": 3, "waiting": 0, "running": 1,
                             "maxCapacity": 10}
