"""Issue #10: idle session actors stop (threads stay bounded) and come back from the store."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from tests.conftest import HELLO_AGENT
from tests.support.daemon import AshdProcess, sse_frames

pytestmark = pytest.mark.e2e


def chat(c: httpx.Client, sid: str, content: str) -> str:
    with c.stream("POST", f"/api/sessions/{sid}/messages", json={"content": content}, timeout=120) as r:
        assert r.status_code == 200, r.read()
        frames = sse_frames(r.read().decode())
    return str([d for _, n, d in frames if n == "turn_complete"][-1]["result"])  # type: ignore[index]


def test_sessions_work_after_their_idle_actors_stopped(start_ashd: Callable[..., AshdProcess]) -> None:
    daemon = start_ashd(None, ASH_SESSION_ACTOR_IDLE_S="1", ASH_IDLE_TIMEOUT_MS="3000", ASH_SWEEP_INTERVAL_S="0.5")
    with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=120) as c:
        c.post("/api/agents", json={"name": "hello", "path": str(HELLO_AGENT)}).raise_for_status()
        sids = []
        for n in range(3):
            sids.append(c.post("/api/sessions", json={"agent": "hello"}).json()["session"]["id"])
            assert f"word-{n}" in chat(c, sids[-1], f"[[say: the word is word-{n}]]")
        c.post(f"/api/sessions/{sids[2]}/stop").raise_for_status()

        # The idle sweep pauses the others; then every actor, quiet for 1 s, stops.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(f"session {sid}: actor idle" in daemon.log(tail=None)
                                                      for sid in sids):
            time.sleep(0.2)
        assert all(f"session {sid}: actor idle" in daemon.log(tail=None) for sid in sids), daemon.log()
        assert [c.get(f"/api/sessions/{sid}").json()["session"]["status"] for sid in sids] == \
            ["paused", "paused", "stopped"]

        # New actors load each session from the store: resume (cold) and send, history intact.
        for n, sid in enumerate(sids):
            assert c.post(f"/api/sessions/{sid}/resume").json()["session"]["status"] == "active"
            assert f"the word is word-{n}" in chat(c, sid, "[[echo-history]]")
        assert c.delete(f"/api/sessions/{sids[0]}").json()["session"]["status"] == "ended"
