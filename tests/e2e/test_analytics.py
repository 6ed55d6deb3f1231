"""Issue #13 items 3 and 5 against a running ashd: GET /api/analytics after a real turn (and
``ashctl analytics``), API keys listed with keyPrefix and createdAt, and the opt-in public
/health figures."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.conftest import HELLO_AGENT
from tests.e2e.test_ashctl_admin import as_json, ashctl, ok
from tests.support.daemon import AshdProcess, sse_events

pytestmark = pytest.mark.e2e


def _turn(api: httpx.Client) -> str:
    api.post("/api/agents", json={"name": "hello", "path": str(HELLO_AGENT)}).raise_for_status()
    created = api.post("/api/sessions", json={"agent": "hello"})
    assert created.status_code == 201, created.text
    sid: str = created.json()["session"]["id"]
    sent = api.post(f"/api/sessions/{sid}/messages", json={"content": "[[say: counted]]"})
    assert sent.status_code == 200 and sse_events(sent.text)[-1][0] == "done", sent.text
    return sid


def test_analytics_after_a_real_turn(ashd_sqlite: AshdProcess) -> None:
    d = ashd_sqlite
    with httpx.Client(base_url=d.url, headers=d.headers, timeout=300) as api:
        _turn(api)
        figures = api.get("/api/analytics").json()
        assert figures["agents"] == {"total": 1}
        assert figures["sessions"] == {"total": 1, "byStatus": {"active": 1}}
        assert figures["messages"]["byRole"]["user"] == 1 and figures["messages"]["total"] >= 2
        assert figures["evals"] == {"totalRuns": 0, "byStatus": {}}
        assert figures["usage"]["totalInputTokens"] > 0 and "totalCostUsd" in figures["usage"]
        latency = figures["latency"]
        assert latency["turns"] == 1
        assert 0 <= latency["firstEventP50Ms"] <= latency["turnP50Ms"] == latency["turnP95Ms"]

        future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        later = api.get("/api/analytics", params={"after": future}).json()
        assert later["sessions"] == {"total": 0, "byStatus": {}} and later["latency"]["turns"] == 0
        assert later["agents"] == {"total": 1}  # agents now, whatever the window
        assert later["usage"]["totalInputTokens"] == 0
        earlier = api.get("/api/analytics", params={"after": "2000-01-01T00:00:00Z", "before": future}).json()
        assert earlier["sessions"]["total"] == 1 and earlier["latency"]["turns"] == 1

        for params, named in (({"after": "yesterday"}, "after"), ({"before": "2026-01-01T00:00:00"}, "before"),
                              ({"after": future, "before": "2000-01-01T00:00:00+02:00"}, "after")):
            bad = api.get("/api/analytics", params=params)
            assert bad.status_code == 400 and bad.json()["statusCode"] == 400, bad.text
            assert bad.json()["error"].startswith(named), bad.text

    shown = as_json(ashctl(d, "analytics", "--json"))
    assert shown["sessions"] == figures["sessions"] and shown["agents"] == figures["agents"]  # type: ignore[index]
    text = ok(ashctl(d, "analytics", "--after", "2000-01-01T00:00:00Z"))
    assert re.search(r"^sessions\.byStatus\.active +1$", text, re.M), text
    assert "latency.turnP50Ms" in text and "evals.totalRuns" in text
    refused = ashctl(d, "analytics", "--after", "soon")
    assert refused.returncode == 1 and "after must be an ISO-8601 timestamp" in refused.stderr


def test_keys_are_listed_with_their_prefix_and_creation_time(ashd_sqlite: AshdProcess) -> None:
    d = ashd_sqlite
    with httpx.Client(base_url=d.url, headers=d.headers, timeout=60) as api:
        (bootstrap,) = api.get("/api/api-keys").json()["keys"]
        assert bootstrap["label"] == "auto-generated" and bootstrap["keyPrefix"] == d.key[:8]
        assert datetime.fromisoformat(bootstrap["createdAt"]).tzinfo is not None
        made = api.post("/api/api-keys", json={"label": "ci"}).json()
        assert made["keyPrefix"] == made["key"][:8]
        listed = {k["id"]: k for k in api.get("/api/api-keys").json()["keys"]}
        assert listed[made["id"]]["keyPrefix"] == made["key"][:8]
        assert made["key"] not in api.get("/api/api-keys").text
    table = ok(ashctl(d, "keys", "list"))
    assert "PREFIX" in table.splitlines()[0] and d.key[:8] in table and made["key"][:8] in table


def test_public_health_figures_are_an_opt_in(start_ashd: Callable[..., AshdProcess]) -> None:
    d = start_ashd(None, ASH_PUBLIC_HEALTH_FIGURES="1")
    with httpx.Client(base_url=d.url, headers=d.headers, timeout=300) as api:
        _turn(api)
        public = httpx.get(f"{d.url}/health", timeout=30).json()
        keyed = api.get("/health").json()
    assert set(public) == {"status", "version", "uptime", "activeSessions", "activeSandboxes",
                           "remoteRunners", "pool"}, public  # nothing per tenant, no host name
    assert public["activeSessions"] == 1 and public["activeSandboxes"] == keyed["activeSandboxes"] >= 1
    assert set(public["pool"]) == set(keyed["pool"]) and "resumeWarmHits" in public["pool"]
    assert {"coordinatorId", "isolation", "lastStartFailure"} <= set(keyed)
