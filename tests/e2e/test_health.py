"""/health, /health/live, /health/ready and ``ashctl doctor`` tell the truth when sandbox starts
fail (issue #9 item 3): a real failure (an agent folder larger than its disk quota), then a
real successful start."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import HELLO_AGENT
from tests.e2e.test_ashctl import ashctl
from tests.support.agents import too_big_agent
from tests.support.daemon import AshdProcess

pytestmark = pytest.mark.e2e


def test_failing_starts_make_health_degraded_until_a_start_succeeds(
        ashd_sqlite: AshdProcess, tmp_path: Path) -> None:
    daemon = ashd_sqlite
    with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=300) as api, \
            httpx.Client(base_url=daemon.url, timeout=30) as public:
        api.post("/api/agents", json={"name": "too-big", "path": str(too_big_agent(tmp_path))}).raise_for_status()
        api.post("/api/agents", json={"name": "hello", "path": str(HELLO_AGENT)}).raise_for_status()
        assert api.get("/health").json()["status"] == "ok"

        assert api.post("/api/sessions", json={"agent": "too-big"}).status_code == 502
        failed_id = api.get("/api/sessions", params={"agent": "too-big"}).json()["sessions"][0]["id"]

        body = public.get("/health").json()
        assert set(body) == {"status", "version", "uptime"} and body["status"] == "degraded"
        health = api.get("/health").json()
        assert health["status"] == "degraded"
        assert "sandbox starts failed" in health["statusReason"]
        last = health["lastStartFailure"]
        assert last["sessionId"] == failed_id and "No space left" in last["reason"] and last["at"]
        assert public.get("/health/live").status_code == 200
        ready = public.get("/health/ready")  # degraded starts do not make the daemon unready
        assert ready.status_code == 200 and ready.json() == {"status": "ready"}

        doctor = ashctl(daemon, "doctor")
        assert doctor.returncode == 1, doctor.stdout + doctor.stderr
        assert "DEGRADED" in doctor.stdout and "sandbox starts failed" in doctor.stdout
        assert failed_id in doctor.stdout

        assert api.post("/api/sessions", json={"agent": "hello"}).status_code == 201
        health = api.get("/health").json()
        assert (health["status"], health["statusReason"]) == ("ok", None)
        assert health["lastStartFailure"]["sessionId"] == failed_id  # still there for the operator
        doctor = ashctl(daemon, "doctor")
        assert doctor.returncode == 0 and "sandbox starts: ok" in doctor.stdout, doctor.stdout
