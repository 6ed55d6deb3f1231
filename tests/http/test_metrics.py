"""GET /metrics against a real ashd: auth, Ash's names, and ashd's histograms after a turn."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.conftest import HELLO_AGENT
from tests.e2e.test_walking_skeleton import send, upload_body
from tests.support.daemon import AshdProcess

pytestmark = pytest.mark.e2e

ASH_GAUGES = ["ash_up", "ash_uptime_seconds", "ash_active_sessions", "ash_active_sandboxes",
              "ash_pool_sandboxes", "ash_pool_max_capacity"]
HISTOGRAMS = ["ashd_http_request_duration_seconds", "ashd_time_to_first_event_seconds",
              "ashd_turn_duration_seconds", "ashd_turn_overhead_seconds", "ashd_sandbox_start_seconds"]
COUNTERS = ["ashd_agent_restarts_total", "ashd_agent_crashes_total", "ashd_agent_give_ups_total",
            "ashd_proxy_tokens_total", "ashd_proxy_cost_usd_total"]


def scrape(client: httpx.Client) -> list[Sample]:
    resp = client.get("/metrics")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    return [s for family in text_string_to_metric_families(resp.text) for s in family.samples]


def values(samples: list[Sample], name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value for s in samples if s.name == name}


def one(samples: list[Sample], name: str, **labels: str) -> float:
    return values(samples, name)[tuple(sorted(labels.items()))]


def test_metrics_after_a_session_and_a_message(ashd_sqlite: AshdProcess) -> None:
    ashd = ashd_sqlite
    with httpx.Client(base_url=ashd.url, timeout=60) as anonymous:
        resp = anonymous.get("/metrics")
        assert resp.status_code == 401 and resp.json()["statusCode"] == 401

    with httpx.Client(base_url=ashd.url, headers=ashd.headers, timeout=60) as client:
        assert client.post("/api/agents", json=upload_body("hello", HELLO_AGENT)).status_code == 201
        resp = client.post("/api/sessions", json={"agent": "hello"})
        assert resp.status_code == 201, resp.text
        sid = resp.json()["session"]["id"]
        names = [name for name, _ in send(client, sid, "[[say: metrics please]]")]
        assert names[0] == "session_start" and names[-1] == "done" and "error" not in names
        assert client.post(f"/api/sessions/{sid}/pause").status_code == 200
        assert client.post(f"/api/sessions/{sid}/resume").status_code == 200  # a warm resume
        samples = scrape(client)
        zygote = client.get("/health").json()["isolation"]["zygote"]
        assert zygote["up"] is True and zygote["restarts"] == 0 and zygote["givenUp"] is None, zygote

    present = {s.name for s in samples}
    assert set(ASH_GAUGES) <= present
    assert {"ash_resume_total", "ash_resume_cold_total"} <= present
    [(labels, up)] = values(samples, "ash_up").items()
    assert up == 1 and dict(labels)["coordinator"]
    assert one(samples, "ash_active_sessions") == 1
    assert one(samples, "ash_active_sandboxes") == 1
    pool = {dict(k)["state"]: v for k, v in values(samples, "ash_pool_sandboxes").items()}
    assert set(pool) == {"cold", "warming", "warm", "waiting", "running"} and sum(pool.values()) == 1
    assert one(samples, "ash_pool_max_capacity") >= 1
    assert one(samples, "ash_resume_total", path="warm") == 1
    assert one(samples, "ash_resume_total", path="cold") == 0

    for histogram in HISTOGRAMS:
        counts = values(samples, f"{histogram}_count")
        assert counts and sum(counts.values()) > 0, histogram
    assert set(COUNTERS) <= present
    # The bridge zygote (sandbox.zygote, on by default) runs and was never restarted.
    assert one(samples, "ashd_zygote_up") == 1 and one(samples, "ashd_zygote_restarts_total") == 0

    # HTTP latency is labelled by route pattern, never by the raw path with its ids.
    routes = {dict(k)["route"] for k in values(samples, "ashd_http_request_duration_seconds_count")}
    assert "/api/sessions/:id/messages" in routes and "/api/agents" in routes
    assert not any(sid in route for route in routes)
    messages = one(samples, "ashd_http_request_duration_seconds_count",
                   method="POST", route="/api/sessions/:id/messages", status="200")
    assert messages == 1
    unauthorised = one(samples, "ashd_http_request_duration_seconds_count",
                       method="GET", route="/metrics", status="401")
    assert unauthorised == 1


def test_metrics_count_proxy_tokens(ashd_sqlite: AshdProcess) -> None:
    ashd = ashd_sqlite
    with httpx.Client(base_url=ashd.url, headers=ashd.headers, timeout=60) as client:
        if client.get("/health").json()["isolation"].get("launcher") == "direct":
            pytest.fail("this test needs the model proxy (sandbox isolation on)")
        assert client.post("/api/agents", json=upload_body("hello", HELLO_AGENT)).status_code == 201
        sid = client.post("/api/sessions", json={"agent": "hello"}).json()["session"]["id"]
        send(client, sid, "[[say: count my tokens]]")
        samples = scrape(client)
    tokens = {dict(k)["kind"]: v for k, v in values(samples, "ashd_proxy_tokens_total").items()}
    assert set(tokens) == {"input", "output", "cache_read", "cache_creation"}
    assert tokens["input"] > 0 and tokens["output"] > 0
    assert one(samples, "ashd_proxy_cost_usd_total") > 0
