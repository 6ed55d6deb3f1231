"""Bad input gets a clear 4xx {error, statusCode}; SIGTERM leaves nothing behind;
a bridge killed mid-turn ends the stream with error then done."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import HELLO_AGENT
from tests.support.daemon import REPO, AshdProcess, agent_processes, is_bridge, sse_events

pytestmark = pytest.mark.e2e


def error_of(resp: httpx.Response, status: int) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error", "statusCode"} and body["statusCode"] == status
    assert isinstance(body["error"], str) and body["error"]
    return str(body["error"])


def test_bad_input_gets_clear_4xx(ashd_sqlite: AshdProcess, tmp_path: Path) -> None:
    ashd = ashd_sqlite
    no_prompt = tmp_path / "no-claude-md"
    no_prompt.mkdir()
    with httpx.Client(base_url=ashd.url, headers=ashd.headers, timeout=60) as c:
        assert "Missing Authorization" in error_of(httpx.get(f"{ashd.url}/api/agents"), 401)
        assert "Invalid API key" in error_of(
            httpx.get(f"{ashd.url}/api/agents", headers={"Authorization": "Bearer ash_nope"}), 401)
        assert "Bearer" in error_of(httpx.get(f"{ashd.url}/api/agents", headers={"Authorization": "Basic x"}), 401)

        bad_name = {"name": "bad name!", "path": str(HELLO_AGENT)}
        assert "agent name" in error_of(c.post("/api/agents", json=bad_name), 400)
        assert "CLAUDE.md" in error_of(c.post("/api/agents", json={"name": "x", "path": str(no_prompt)}), 400)
        assert "not a directory" in error_of(c.post("/api/agents", json={"name": "x", "path": "/nonexistent"}), 400)
        assert "not valid JSON" in error_of(c.post("/api/agents", content=b"{nope"), 400)
        assert "JSON object" in error_of(c.post("/api/agents", content=b"[1]"), 400)
        escape = {"name": "x", "files": [{"path": "../../etc/evil", "content": "aGk="}]}
        assert "'..'" in error_of(c.post("/api/agents", json=escape), 400)
        bad_b64 = {"name": "x", "files": [{"path": "a", "content": "!"}]}
        assert "base64" in error_of(c.post("/api/agents", json=bad_b64), 400)
        assert "reserved" in error_of(c.post("/api/agents", json={"name": "x", "path": str(HELLO_AGENT),
                                                                  "env": {"ANTHROPIC_API_KEY": "k"}}), 400)

        assert "not found" in error_of(c.get("/api/agents/ghost"), 404)
        assert "not found" in error_of(c.post("/api/sessions", json={"agent": "ghost"}), 404)
        assert "agent name" in error_of(c.post("/api/sessions", json={}), 400)
        missing = str(uuid.uuid4())
        assert "not found" in error_of(c.get(f"/api/sessions/{missing}"), 404)
        assert "not found" in error_of(c.post(f"/api/sessions/{missing}/messages", json={"content": "hi"}), 404)
        assert "UUID" in error_of(c.get("/api/sessions/not-a-uuid"), 400)
        assert "not found" in error_of(c.get("/api/nothing-here"), 404)

        assert c.post("/api/agents", json={"name": "hello", "path": str(HELLO_AGENT)}).status_code == 201
        assert "betas" in error_of(c.post("/api/sessions", json={"agent": "hello", "betas": "x"}), 400)
        assert "reserved" in error_of(c.post("/api/sessions", json={"agent": "hello", "extraEnv": {"PATH": "/x"}}), 400)
        sid = c.post("/api/sessions", json={"agent": "hello"}).json()["session"]["id"]
        assert "content" in error_of(c.post(f"/api/sessions/{sid}/messages", json={}), 400)
        assert "content" in error_of(c.post(f"/api/sessions/{sid}/messages", json={"content": 5}), 400)
        assert "not valid JSON" in error_of(c.post(f"/api/sessions/{sid}/messages", content=b"{"), 400)
        assert "limit" in error_of(c.get(f"/api/sessions/{sid}/messages?limit=0"), 400)
        assert c.delete(f"/api/sessions/{sid}").status_code == 200
        assert error_of(c.post(f"/api/sessions/{sid}/messages", json={"content": "hi"}), 400) == "Session is ended"
        # Ending twice is idempotent.
        assert c.delete(f"/api/sessions/{sid}").json()["session"]["status"] == "ended"
    assert " 500 " not in ashd.log()


def test_sigterm_stops_cleanly(ashd_sqlite: AshdProcess) -> None:
    ashd = ashd_sqlite
    with httpx.Client(base_url=ashd.url, headers=ashd.headers, timeout=60) as c:
        c.post("/api/agents", json={"name": "hello", "path": str(HELLO_AGENT)}).raise_for_status()
        sids = [c.post("/api/sessions", json={"agent": "hello"}).json()["session"]["id"] for _ in range(2)]
        with c.stream("POST", f"/api/sessions/{sids[0]}/messages", json={"content": "[[say: ok]]"}) as r:
            r.read()
    children = ashd.descendants()
    assert len(agent_processes(ashd)) >= 4  # two bridges, two CLIs
    assert ashd.stop(signal.SIGTERM) == 0
    _, alive = psutil.wait_procs(children, timeout=5)
    assert alive == [], [p.pid for p in alive]
    assert "ashd stopped" in ashd.log()


def is_zygote(cmd: str) -> bool:
    return "ashd.bridge.zygote" in cmd


def test_a_stop_asked_during_start_up_is_a_clean_stop(tmp_path: Path) -> None:
    """SIGTERM while ashd is still starting (its store just migrated; its listener may already
    answer /health before the start is over): a graceful stop, not the default action's death
    that would skip every clean-up."""
    daemon = AshdProcess(tmp_path / "data", "http://127.0.0.1:9")
    with open(daemon.log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "ashd.cli.daemon"], env=daemon.env, stdout=log,
                                stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while "store ready" not in daemon.log(None) and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(90) == 0, daemon.log()
        text = daemon.log(None)
        assert "received SIGTERM; shutting down" in text and "ashd stopped" in text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("victim", ["bridge", "zygote"])
def test_bridge_killed_mid_turn_ends_stream(ashd_sqlite: AshdProcess, victim: str) -> None:
    """The bridge is SIGKILLed mid-turn, alone or by the death of the zygote it was forked
    from (its death signal: a zygote's death kills every bridge it forked)."""
    ashd = ashd_sqlite
    with httpx.Client(base_url=ashd.url, headers=ashd.headers, timeout=60) as c:
        c.post("/api/agents", json={"name": "hello", "path": str(HELLO_AGENT)}).raise_for_status()
        sid = c.post("/api/sessions", json={"agent": "hello"}).json()["session"]["id"]
        marker = uuid.uuid4().hex[:8]
        with c.stream("POST", f"/api/sessions/{sid}/messages", json={"content": f"[[say: before {marker}]]"}) as r:
            r.read()
        chosen = is_bridge if victim == "bridge" else is_zygote
        target = next(p for p in ashd.descendants() if chosen(" ".join(p.cmdline())))
        first_delta = threading.Event()
        killed_at: list[float] = []

        def kill_when_streaming() -> None:
            first_delta.wait(30)
            killed_at.append(time.monotonic())
            os.kill(target.pid, signal.SIGKILL)

        killer = threading.Thread(target=kill_when_streaming)
        killer.start()
        body = []
        long_text = " ".join(f"word{i}" for i in range(200))
        with c.stream("POST", f"/api/sessions/{sid}/messages",
                      json={"content": f"[[slow: 50]] [[say: {long_text}]]", "includePartialMessages": True}) as r:
            for chunk in r.iter_text():
                body.append(chunk)
                if "text_delta" in chunk:
                    first_delta.set()
        ended_at = time.monotonic()
        killer.join()
        events = sse_events("".join(body))
        names = [n for n, _ in events]
        assert names[-2:] == ["error", "done"], names
        assert ended_at - killed_at[0] < 1.0
        assert "word199" not in "".join(str(d) for _, d in events)

        # The session is still usable: the next message starts a new agent process, which
        # resumes the conversation from the transcript on disk.
        with c.stream("POST", f"/api/sessions/{sid}/messages", json={"content": "[[echo-history]]"}) as r:
            events = sse_events(r.read().decode())
        result = next(data for name, data in events if name == "turn_complete")
        assert f"before {marker}" in result["result"]
        if victim == "zygote":  # restarted in the background (operations.md, "Supervision")
            deadline = time.monotonic() + 60
            while (zygote := c.get("/health").json()["isolation"]["zygote"])["restarts"] < 1 or not zygote["up"]:
                assert time.monotonic() < deadline, zygote
                time.sleep(0.1)
