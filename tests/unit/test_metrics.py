"""ashd/metrics.py and the route labels: pure, no daemon."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ashd.config import SupervisionConfig
from ashd.http.metrics import route_label
from ashd.metrics import LiveFigures, Metrics
from ashd.policy import ChildHistory
from ashd.proxy.meter import Usage


def scrape(metrics: Metrics) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_each_metrics_has_its_own_registry() -> None:
    a, b = Metrics(), Metrics()
    a.agent_crashes.inc()
    assert scrape(a)["ashd_agent_crashes_total"][()] == 1
    assert scrape(b)["ashd_agent_crashes_total"][()] == 0


def test_live_figures_become_ash_gauges() -> None:
    metrics = Metrics()
    figures = LiveFigures(active_sessions=3, active_sandboxes=2, max_capacity=10, pool={"warm": 1, "running": 1})
    metrics.watch(lambda: figures, "host-1", started_at=0.0)
    seen = scrape(metrics)
    assert seen["ash_up"] == {(("coordinator", "host-1"),): 1}
    assert seen["ash_uptime_seconds"][()] > 0
    assert seen["ash_active_sessions"][()] == 3 and seen["ash_active_sandboxes"][()] == 2
    assert seen["ash_pool_max_capacity"][()] == 10
    assert seen["ash_pool_sandboxes"] == {
        (("state", "cold"),): 0, (("state", "warming"),): 0, (("state", "warm"),): 1,
        (("state", "waiting"),): 0, (("state", "running"),): 1}
    assert set(seen["ash_resume_total"]) == {(("path", p),) for p in ("warm", "cold", "prewarm")}
    assert set(seen["ash_resume_cold_total"]) == {(("source", s),) for s in ("local", "cloud", "fresh")}


def test_a_failing_source_still_reports_up() -> None:
    metrics = Metrics()

    def broken() -> LiveFigures:
        raise TimeoutError("pool did not answer")

    metrics.watch(broken, "host-1")
    seen = scrape(metrics)
    assert seen["ash_up"] == {(("coordinator", "host-1"),): 1}
    assert "ash_active_sessions" not in seen


def test_usage_is_counted_by_kind_and_cost() -> None:
    metrics = Metrics()
    usage = Usage("claude-sonnet-4", input_tokens=100, output_tokens=20, cache_creation_tokens=5, cache_read_tokens=7)
    metrics.record_usage(usage)
    metrics.record_usage(usage)
    seen = scrape(metrics)
    assert seen["ashd_proxy_tokens_total"] == {
        (("kind", "input"),): 200, (("kind", "output"),): 40,
        (("kind", "cache_read"),): 14, (("kind", "cache_creation"),): 10}
    assert seen["ashd_proxy_cost_usd_total"][()] == pytest.approx(2 * usage.cost_usd)


def test_restart_decisions_are_counted() -> None:
    from ashd.actors.restarts import RestartGovernor

    metrics = Metrics()
    governor = RestartGovernor(SupervisionConfig(), metrics=metrics)
    history = ChildHistory()
    for _ in range(10):  # crash at once, again and again: restarts, then the policy gives up
        history = history.record_start(governor.now()).record_exit(governor.now(), True, "exit code 1")
        governor.decide(history, "t")
    seen = scrape(metrics)
    assert seen["ashd_agent_restarts_total"][()] == governor.restarts > 0
    assert seen["ashd_agent_give_ups_total"][()] == governor.give_ups + governor.escalations > 0


@pytest.mark.parametrize(("pattern", "label"), [
    (r"/api/sessions/([^/]+)/messages$", "/api/sessions/:id/messages"),
    (r"/api/agents/([^/]+)$", "/api/agents/:name"),
    (r"/api/agents/([^/]+)/config$", "/api/agents/:name/config"),
    (r"/metrics$", "/metrics"),
])
def test_route_labels_are_patterns(pattern: str, label: str) -> None:
    assert route_label(pattern) == label
