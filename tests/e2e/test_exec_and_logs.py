"""Exec inside the sandbox and the sandbox log ring, through a real ashd (bwrap sandboxes)."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.conftest import HELLO_AGENT
from tests.support.daemon import AshdProcess, sse_frames

pytestmark = pytest.mark.e2e


def new_session(c: httpx.Client) -> str:
    c.post("/api/agents", json={"name": "hello", "path": str(HELLO_AGENT)}).raise_for_status()
    r = c.post("/api/sessions", json={"agent": "hello"})
    assert r.status_code == 201, r.text
    return str(r.json()["session"]["id"])


def test_exec_runs_inside_the_sandbox(ashd_sqlite: AshdProcess) -> None:
    with httpx.Client(base_url=ashd_sqlite.url, headers=ashd_sqlite.headers, timeout=60) as c:
        sid = new_session(c)
        r = c.post(f"/api/sessions/{sid}/exec",
                   json={"command": "echo out-$((40+2)); echo err-1 >&2; id -u; pwd; echo hi > made.txt; exit 3"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["exitCode"] == 3
        out = body["stdout"].split("\n")
        assert out[0] == "out-42" and out[2] == "/workspace"
        assert int(out[1]) != 0  # the sandbox uid, not ashd's root
        assert body["stderr"] == "err-1\n"
        assert body["truncated"] is False and body["timedOut"] is False
        # Same isolation as the agent: ashd's data dir and environment are not visible.
        hidden = c.post(f"/api/sessions/{sid}/exec", json={"command": f"ls {ashd_sqlite.data_dir}"}).json()
        assert hidden["exitCode"] != 0 and "No such file" in hidden["stderr"]
        env = c.post(f"/api/sessions/{sid}/exec", json={"command": "env"}).json()["stdout"]
        assert "planted-secret" not in env and "sk-real-upstream-key" not in env and "HOME=/home/agent" in env
        # The file is in the agent's workspace: the agent's own tool sees it.
        with c.stream("POST", f"/api/sessions/{sid}/messages", json={"content": "[[bash: cat made.txt]]"}) as s:
            frames = sse_frames(s.read().decode())
        assert any(n == "tool_result" and "hi" in d["content"] for _, n, d in frames)


def test_exec_timeout_kills_the_group_and_output_is_capped(ashd_sqlite: AshdProcess) -> None:
    with httpx.Client(base_url=ashd_sqlite.url, headers=ashd_sqlite.headers, timeout=60) as c:
        sid = new_session(c)
        began = time.monotonic()
        r = c.post(f"/api/sessions/{sid}/exec", json={"command": "(sleep 60; echo late) & echo early; sleep 60",
                                                       "timeout": 500})
        assert time.monotonic() - began < 10
        body = r.json()
        assert r.status_code == 200 and body["timedOut"] is True and body["exitCode"] == 124
        assert body["stdout"] == "early\n" and "timed out after 500 ms" in body["stderr"]
        left = c.post(f"/api/sessions/{sid}/exec", json={"command": "ps -e -o comm= | grep -c sleep || true"})
        assert left.json()["stdout"].strip() == "0"  # nothing of the killed command lingers
        big = c.post(f"/api/sessions/{sid}/exec", json={"command": "head -c 11000000 /dev/zero | tr '\\0' a"})
        body = big.json()
        assert body["truncated"] is True and len(body["stdout"]) == 10 * 1024 * 1024
        assert "output truncated" in body["stderr"]


def test_exec_beside_a_running_turn(ashd_sqlite: AshdProcess) -> None:
    with httpx.Client(base_url=ashd_sqlite.url, headers=ashd_sqlite.headers, timeout=60) as c:
        sid = new_session(c)
        frames: list[tuple[int | None, str, object]] = []
        started = threading.Event()

        def chat() -> None:
            with httpx.Client(base_url=ashd_sqlite.url, headers=ashd_sqlite.headers, timeout=60) as c2, \
                    c2.stream("POST", f"/api/sessions/{sid}/messages",
                              json={"content": "[[slow: 30]] [[say: " + "word " * 40 + "]]"}) as s:
                chunks = s.iter_bytes()
                body = next(chunks)
                started.set()
                frames.extend(sse_frames((body + b"".join(chunks)).decode()))

        runner = threading.Thread(target=chat)
        runner.start()
        assert started.wait(30)
        results = [c.post(f"/api/sessions/{sid}/exec", json={"command": f"echo n{i}"}).json() for i in range(5)]
        runner.join(60)
        assert [r["stdout"] for r in results] == [f"n{i}\n" for i in range(5)]
        names = [n for _, n, _ in frames]
        assert "error" not in names and names[-1] == "done" and "turn_complete" in names


def test_exec_refusals(ashd_sqlite: AshdProcess) -> None:
    with httpx.Client(base_url=ashd_sqlite.url, headers=ashd_sqlite.headers, timeout=60) as c:
        sid = new_session(c)
        for bad in ({}, {"command": 3}, {"command": "  "}, {"command": "x" * 100_001},
                    {"command": "true", "timeout": 0}, {"command": "true", "timeout": 300_001},
                    {"command": "true", "timeout": "5"}, {"command": "true", "shell": "bash"}):
            r = c.post(f"/api/sessions/{sid}/exec", json=bad)
            assert r.status_code == 400 and r.json()["statusCode"] == 400, (bad, r.text)
        assert c.post("/api/sessions/not-a-uuid/exec", json={"command": "true"}).status_code == 400
        c.post(f"/api/sessions/{sid}/pause").raise_for_status()
        r = c.post(f"/api/sessions/{sid}/exec", json={"command": "true"})
        assert r.status_code == 409 and "paused; resume it first" in r.json()["error"]
        c.post(f"/api/sessions/{sid}/resume").raise_for_status()
        assert c.post(f"/api/sessions/{sid}/exec", json={"command": "true"}).json()["exitCode"] == 0


def test_logs_ring(ashd_sqlite: AshdProcess) -> None:
    with httpx.Client(base_url=ashd_sqlite.url, headers=ashd_sqlite.headers, timeout=60) as c:
        sid = new_session(c)
        logs = c.get(f"/api/sessions/{sid}/logs").json()
        assert logs["source"] == "sandbox"
        lines = logs["logs"]
        assert lines[0]["index"] == 0 and all(e["level"] in ("stdout", "stderr", "system") for e in lines)
        assert any(e["level"] == "system" and "agent process started" in e["text"] for e in lines)
        assert any(e["level"] == "stderr" and "CLI connected" in e["text"] for e in lines)  # the bridge's stderr
        last = lines[-1]["index"]
        assert c.get(f"/api/sessions/{sid}/logs", params={"after": last}).json()["logs"] == []
        c.post(f"/api/sessions/{sid}/stop").raise_for_status()
        after = c.get(f"/api/sessions/{sid}/logs", params={"after": last}).json()["logs"]
        assert any(e["level"] == "system" and "exited" in e["text"] for e in after)
        assert [e["index"] for e in after] == list(range(last + 1, last + 1 + len(after)))
        assert "ash_" + "x" not in str(after) and ashd_sqlite.key not in str(c.get(f"/api/sessions/{sid}/logs").json())
        assert c.get(f"/api/sessions/{sid}/logs", params={"after": "x"}).status_code == 400
        unknown = "00000000-0000-4000-8000-000000000000"
        assert c.get(f"/api/sessions/{unknown}/logs").status_code == 404
