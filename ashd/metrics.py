"""The daemon's Prometheus metrics: Ash's names plus the histograms and counters Ash lacks.

One :class:`Metrics` per daemon, with its own ``CollectorRegistry`` (never the global one,
so tests and several daemons in one process stay apart). It is built once at start-up and
passed to whoever records. Recording is thread-safe (prometheus-client locks each value)
and never blocks beyond that lock, so any thread may record: the loop, actor threads, the
proxy loop.

Ash's live figures (sessions, pool states, resumes) are read at scrape time by
:class:`AshCollector` from a ``source`` callable, which may block briefly: the scrape runs
on a reader thread, never on the IOLoop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from ashd.proxy.meter import Usage

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
POOL_STATES = ("cold", "warming", "warm", "waiting", "running")
RESUME_PATHS = ("warm", "cold", "prewarm")
COLD_SOURCES = ("local", "cloud", "fresh")
SNAPSHOT_SKIP_REASONS = ("too_large", "disk_space")
TREE_CHILDREN = ("pool", "sessions", "session")  # what the supervision tree restarts
RUNNER_STATES = ("live", "draining")  # registered runners heard from in time, by whether they take sessions
HANDOVER_ANSWERS = ("released", "busy")  # a holder's answers to another coordinator (ashd/runtime/ownership.py)

_TURN_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_START_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60)


@dataclass(frozen=True)
class LiveFigures:
    """Ash's gauges at one instant (any missing key reads as 0)."""

    active_sessions: int
    active_sandboxes: int
    max_capacity: int
    pool: Mapping[str, int] = field(default_factory=dict)  # sandboxes by state (POOL_STATES)
    warm_sessions: int = 0  # active sessions with a live CLI
    parked_sessions: int = 0  # active sessions without one (parked: the next message wakes them)


Source = Callable[[], LiveFigures]
"""Gathers the live figures; may block briefly and may raise (the scrape then omits them)."""


class Metrics:
    """Every metric ashd records, in one registry. Thread-safe."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_duration = Histogram(
            "ashd_http_request_duration_seconds", "HTTP request duration by route pattern (SSE: until the stream ends)",
            ["method", "route", "status"], registry=r)
        self.first_event = Histogram(
            "ashd_time_to_first_event_seconds", "Turn start to the first SSE frame after session_start",
            buckets=_TURN_BUCKETS, registry=r)
        self.turn_duration = Histogram(
            "ashd_turn_duration_seconds", "Turn start to its done frame", buckets=_TURN_BUCKETS, registry=r)
        self.turn_overhead = Histogram(
            "ashd_turn_overhead_seconds",
            "ashd's own time per message: POST received to the query written to the agent process",
            registry=r)
        self.sandbox_start = Histogram(
            "ashd_sandbox_start_seconds", "Agent process spawn to its ready handshake", buckets=_START_BUCKETS,
            registry=r)
        self.wakes = Counter(
            "ashd_session_wakes", "Messages to an active session without a live CLI (parked, or after a "
            "crash or restart) that started one with the conversation", registry=r)
        self.wake_duration = Histogram(
            "ashd_session_wake_seconds", "A wake: the message's turn asked to the CLI ready with the conversation",
            buckets=_START_BUCKETS, registry=r)
        self.agent_restarts = Counter(
            "ashd_agent_restarts", "Agent process restarts granted by the restart policy", registry=r)
        self.agent_crashes = Counter(
            "ashd_agent_crashes", "Unexpected exits of a started agent process", registry=r)
        self.agent_give_ups = Counter(
            "ashd_agent_give_ups", "Times the restart policy gave up on a session (it went to error)", registry=r)
        self.actor_restarts = Counter(
            "ashd_actor_restarts", "Restarts of a crashed actor by the supervision tree, by child "
            "(pool, sessions: the session supervisor, session: a session actor)", ["child"], registry=r)
        self.actor_failed = Gauge(
            "ashd_actor_failed", "1 once the supervision tree gave up on this child", ["child"], registry=r)
        for child in TREE_CHILDREN:
            self.actor_restarts.labels(child)
            self.actor_failed.labels(child)
        self.zygote_up = Gauge(
            "ashd_zygote_up", "1 while the bridge zygote runs (agent processes are forked from it)", registry=r)
        self.zygote_restarts = Counter(
            "ashd_zygote_restarts", "Restarts of the bridge zygote after it died", registry=r)
        self.proxy_tokens = Counter(
            "ashd_proxy_tokens", "Tokens metered by the model proxy", ["kind"], registry=r)
        self.proxy_cost = Counter(
            "ashd_proxy_cost_usd", "Estimated model cost metered by the model proxy, in USD", registry=r)
        self.resumes = Counter("ash_resume", "Session resumes by path", ["path"], registry=r)
        self.resumes_cold = Counter("ash_resume_cold", "Cold resumes by where the workspace came from",
                                    ["source"], registry=r)
        self.snapshot_skipped = Counter(
            "ashd_snapshot_skipped", "Workspace snapshots not taken, by reason (each is also a session event)",
            ["reason"], registry=r)
        self.session_transitions = Counter(
            "ashd_session_transitions", "Session status changes, by the status entered", ["to"], registry=r)
        self.runners = Gauge(
            "ashd_runners", "Registered runners heard from in time, by state (coordinators; set at each "
            "liveness sweep)", ["state"], registry=r)
        self.runners_lost = Counter(
            "ashd_runners_lost", "Runners this coordinator removed after they missed their heartbeats "
            "(their live sessions paused)", registry=r)
        self.handovers = Counter(
            "ashd_session_handovers", "Requests from other coordinators for a session this coordinator held, "
            "by its answer: released (handed over) or busy (a turn ran: the asker answered 409)",
            ["answer"], registry=r)
        for state in RUNNER_STATES:
            self.runners.labels(state)
        for answer in HANDOVER_ANSWERS:
            self.handovers.labels(answer)
        for reason in SNAPSHOT_SKIP_REASONS:
            self.snapshot_skipped.labels(reason)
        for path in RESUME_PATHS:
            self.resumes.labels(path)
        for source in COLD_SOURCES:
            self.resumes_cold.labels(source)

    def watch(self, source: Source, coordinator: str, started_at: float | None = None) -> None:
        """Report Ash's live gauges from ``source`` at each scrape (call once, at start-up)."""
        self.registry.register(AshCollector(source, coordinator, started_at or time.monotonic()))

    def record_usage(self, usage: Usage) -> None:
        """One metered model response (model proxy thread)."""
        for kind, value in (("input", usage.input_tokens), ("output", usage.output_tokens),
                            ("cache_read", usage.cache_read_tokens),
                            ("cache_creation", usage.cache_creation_tokens)):
            self.proxy_tokens.labels(kind).inc(value)
        self.proxy_cost.inc(usage.cost_usd)

    def render(self) -> bytes:
        """The exposition text (0.0.4). Blocks while the collectors gather: not on the IOLoop."""
        return generate_latest(self.registry)


class AshCollector(Collector):
    """Ash's gauges: ``ash_up``, uptime, sessions, sandboxes, pool states and capacity."""

    def __init__(self, source: Source, coordinator: str, started_at: float) -> None:
        self._source = source
        self._coordinator = coordinator
        self._started_at = started_at

    def describe(self) -> list[Metric]:
        return []  # gathered at scrape time only; describing must not ask the actors

    def collect(self) -> list[Metric]:
        up = GaugeMetricFamily("ash_up", "1 while ashd serves", labels=["coordinator"])
        up.add_metric([self._coordinator], 1)
        families: list[Metric] = [
            up, GaugeMetricFamily("ash_uptime_seconds", "Seconds since ashd started",
                                  value=time.monotonic() - self._started_at)]
        try:
            figures = self._source()
        except Exception as exc:  # boundary: a slow pool must not fail the whole scrape
            log.warning("metrics scrape without live pool figures: %s", exc)
            return families
        return families + live_families(figures)


def live_families(figures: LiveFigures) -> list[Metric]:
    """Pure: Ash's gauges for one set of live figures."""
    pool = GaugeMetricFamily("ash_pool_sandboxes", "Live sandboxes by state", labels=["state"])
    for state in POOL_STATES:
        pool.add_metric([state], figures.pool.get(state, 0))
    return [
        GaugeMetricFamily("ash_active_sessions", "Sessions with status active", value=figures.active_sessions),
        GaugeMetricFamily("ash_active_sandboxes", "Live sandboxes", value=figures.active_sandboxes),
        pool,
        GaugeMetricFamily("ash_pool_max_capacity",
                          "Sandbox capacity (the smaller of ASH_MAX_SANDBOXES and ASH_MAX_WARM_SESSIONS)",
                          value=figures.max_capacity),
        GaugeMetricFamily("ashd_warm_sessions", "Active sessions with a live CLI", value=figures.warm_sessions),
        GaugeMetricFamily("ashd_parked_sessions", "Active sessions parked (no CLI; the next message wakes them)",
                          value=figures.parked_sessions),
    ]

