"""A running ashd (real CLI, scripted model) with the isolating launcher, and helpers to drive
the agent's own Bash tool. Needs root (the default launcher does)."""

from __future__ import annotations

import http.server
import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.daemon import AshdProcess, sse_events

if os.geteuid() != 0:
    pytest.skip("the security battery needs root (the isolating launcher)", allow_module_level=True)

TARGET_MARKER = "egress-target-reached-5d2c"
POLICY = {"limits": {"memoryMb": 512, "pids": 128, "diskMb": 64, "tmpMb": 32},
          "egress": {"allow": ["allowed.test", "denied-by-address.test"]}}


class EgressTarget(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = TARGET_MARKER.encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def egress_target() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EgressTarget)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


class Agent:
    """One session; ``bash`` runs a command through the agent's Bash tool."""

    def __init__(self, client: httpx.Client, sid: str) -> None:
        self.client, self.sid = client, sid

    def turn(self, content: str) -> list[tuple[str, Any]]:
        with self.client.stream("POST", f"/api/sessions/{self.sid}/messages", json={"content": content},
                                timeout=180) as resp:
            assert resp.status_code == 200, resp.read()
            return sse_events(resp.read().decode())

    def bash(self, command: str) -> str:
        events = self.turn(f"[[bash: {command}]]")
        results = [d for n, d in events if n == "tool_result"]
        assert results, events
        content = results[-1]["content"]
        return content if isinstance(content, str) else json.dumps(content)

    def lifecycle(self) -> list[dict[str, Any]]:
        events = self.client.get(f"/api/sessions/{self.sid}/events", params={"limit": 500}).json()["events"]
        return [json.loads(e["data"]) for e in events if e["type"] == "lifecycle"]


@pytest.fixture(scope="module")
def battery(tmp_path_factory: pytest.TempPathFactory, egress_target: int) -> Iterator[dict[str, Any]]:
    from ashd.scripted.server import ScriptedModel

    base = tmp_path_factory.mktemp("battery")
    agent = base / "agent"
    (agent / ".ashd").mkdir(parents=True)
    (agent / ".claude").mkdir()
    (agent / "CLAUDE.md").write_text("You are the security battery agent.\n")
    (agent / ".claude" / "settings.json").write_text('{"permissions": {"deny": ["WebFetch"]}}\n')
    (agent / ".ashd" / "sandbox.json").write_text(json.dumps(POLICY))
    model = ScriptedModel()
    model.start()
    daemon = AshdProcess(base / "data", model.base_url, None, {
        "ASH_EGRESS_PINS": "allowed.test=127.0.0.1", "ASH_SANDBOX_MOUNT_ROOT": "/run/ashd-battery"})
    daemon.start()
    client = httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=60)
    client.post("/api/agents", json={"name": "battery", "path": str(agent)}).raise_for_status()

    def new_agent() -> Agent:
        resp = client.post("/api/sessions", json={"agent": "battery"})
        assert resp.status_code == 201, resp.text
        return Agent(client, resp.json()["session"]["id"])

    try:
        yield {"daemon": daemon, "model": model, "client": client, "new_agent": new_agent,
               "agent_dir": agent, "target_port": egress_target}
    finally:
        client.close()
        daemon.stop()
        model.stop()


@pytest.fixture(scope="module")
def agent(battery: dict[str, Any]) -> Agent:
    new: Callable[[], Agent] = battery["new_agent"]
    return new()


@pytest.fixture(scope="module")
def data_dir(battery: dict[str, Any]) -> Path:
    daemon: AshdProcess = battery["daemon"]
    return daemon.data_dir
