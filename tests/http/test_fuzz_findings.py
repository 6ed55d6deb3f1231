"""Regressions for what fuzzing ashd (``test_fuzz.py``) turned up, on both backends."""

from __future__ import annotations

import httpx
import pytest

from tests.support.daemon import AshdProcess


@pytest.mark.parametrize("path", ["/api/agents/a%00b", "/api/agents/a%00b/config", "/api/agents/a%20b"])
def test_an_agent_name_no_deploy_could_create_is_a_400_not_a_500(ashd: AshdProcess, path: str) -> None:
    # Postgres refuses to compare text with a NUL byte: the lookup used to fail with a 500.
    with httpx.Client(base_url=ashd.url, headers=ashd.headers, timeout=30) as c:
        for method in ("GET", "DELETE") if path.count("/") == 3 else ("GET", "PATCH"):
            r = c.request(method, path, json={} if method == "PATCH" else None)
            assert r.status_code == 400, (method, r.text)
            assert r.json() == {"error": "agent name must be 1-255 characters of letters, digits, '_' or '-'",
                                "statusCode": 400}


def test_a_sequence_beyond_32_bits_is_a_400_not_a_500(ashd: AshdProcess) -> None:
    # Sequences are 32-bit INTEGER columns: Postgres refused a larger `after` with a 500.
    from tests.conftest import HELLO_AGENT

    with httpx.Client(base_url=ashd.url, headers=ashd.headers, timeout=60) as c:
        c.post("/api/agents", json={"name": "seq", "path": str(HELLO_AGENT)}).raise_for_status()
        sid = c.post("/api/sessions", json={"agent": "seq"}).json()["session"]["id"]
        for path in ("messages", "events", "stream"):
            r = c.get(f"/api/sessions/{sid}/{path}", params={"after": 2**31 - 1})
            assert r.status_code == 200, (path, r.text)
            r = c.get(f"/api/sessions/{sid}/{path}", params={"after": 1543331050722})
            assert r.status_code == 400 and "between 0 and 2147483647" in r.json()["error"], (path, r.text)
        r = c.get(f"/api/sessions/{sid}/stream", headers={"Last-Event-ID": "99999999999"})
        assert r.status_code == 400 and "Last-Event-ID" in r.json()["error"]
