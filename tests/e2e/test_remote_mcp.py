"""Issue #13.1: url MCP servers (``type: http`` and ``sse``) are reached through the egress
proxy, and only there (real daemon, CLI, bwrap sandbox, egress proxy, a real MCP server).

The agent allows ``mcp.test`` only (pinned by the operator to 127.0.0.1, where the test's
MCP servers listen over TLS).
The CLI trusts the test CA through ``NODE_EXTRA_CA_CERTS`` (a session's ``extraEnv``).
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from ashd.scripted.server import ScriptedModel
from tests.conftest import HELLO_AGENT
from tests.store.pg import backend_database
from tests.support.daemon import AshdProcess, sse_events
from tests.support.remote_mcp import ELSEWHERE, HOST, TOKEN, RemoteMcp, write_tls_files

pytestmark = pytest.mark.e2e
Events = list[tuple[str, Any]]
CA_INSIDE = "/workspace/ca.pem"  # the agent folder is the sandbox's /workspace


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return write_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def remotes(tls: tuple[Path, Path, Path]) -> Iterator[dict[str, RemoteMcp]]:
    _, leaf, key = tls
    servers = {kind: RemoteMcp(kind, leaf, key).start() for kind in ("http", "sse")}
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory, tls: tuple[Path, Path, Path]) -> Path:
    folder = tmp_path_factory.mktemp("remote-agent") / "agent"
    shutil.copytree(HELLO_AGENT, folder)
    (folder / ".ashd").mkdir()
    (folder / ".ashd" / "sandbox.json").write_text(json.dumps({"egress": {"allow": [HOST]}}))
    shutil.copy(tls[0], folder / "ca.pem")
    return folder


@pytest.fixture(scope="module")
def model() -> Iterator[ScriptedModel]:
    scripted = ScriptedModel()
    scripted.start()
    yield scripted
    scripted.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> Iterator[str | None]:
    with backend_database(request.param) as url:
        yield url


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, database: str | None, model: ScriptedModel, agent: Path,
           remotes: dict[str, RemoteMcp]) -> Iterator[AshdProcess]:
    process = AshdProcess(tmp_path_factory.mktemp("remote-mcp") / "data", model.base_url, database,
                          {"ASH_EGRESS_PINS": f"{HOST}=127.0.0.1"})
    process.start()
    try:
        with httpx.Client(base_url=process.url, headers=process.headers) as c:
            c.post("/api/agents", json={"name": "remote", "path": str(agent)}).raise_for_status()
        yield process
    finally:
        process.stop()


def _turn(daemon: AshdProcess, server: dict[str, Any], content: str) -> Events:
    """A new session with ``server`` as its MCP server ``remote``, and one turn."""
    with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=180) as c:
        created = c.post("/api/sessions", json={"agent": "remote", "mcpServers": {"remote": server},
                                                "allowedTools": ["mcp__remote__shout"],
                                                "extraEnv": {"NODE_EXTRA_CA_CERTS": CA_INSIDE}})
        assert created.status_code == 201, created.text
        sid = created.json()["session"]["id"]
        with c.stream("POST", f"/api/sessions/{sid}/messages", json={"content": content}) as r:
            assert r.status_code == 200, r.read()
            return sse_events(r.read().decode())


def _shout(mark: str) -> str:
    return f'[[tool: mcp__remote__shout {{"text": "{mark}"}}]]'


def _tool_results(events: Events) -> list[dict[str, Any]]:
    return [d for name, d in events if name == "tool_result"]


def _egress(events: Events) -> set[tuple[str, bool]]:
    return {(d["host"], d["allowed"]) for name, d in events if name == "egress"}


def _errors(events: Events) -> list[str]:
    return [d["error"] for name, d in events if name == "error"]


@pytest.mark.parametrize("transport", ["http", "sse"])
def test_an_allowlisted_mcp_server_is_called_through_the_egress_proxy(
        daemon: AshdProcess, remotes: dict[str, RemoteMcp], transport: str) -> None:
    remote, mark = remotes[transport], uuid.uuid4().hex[:12]
    events = _turn(daemon, {"type": transport, "url": remote.url()}, _shout(mark))
    results = _tool_results(events)
    assert [r["is_error"] for r in results] == [False], events
    assert f"remote says {mark.upper()}" in json.dumps(results[0]["content"])
    assert mark in remote.calls  # the call reached the server...
    assert {s.host for s in remote.requests} == {f"{HOST}:{remote.port}"}
    assert (HOST, True) in _egress(events)  # ...through the proxy, which let it pass
    assert not _errors(events), events


def test_a_server_that_wants_a_sign_in_is_an_error_event_and_headers_sign_in(
        daemon: AshdProcess, remotes: dict[str, RemoteMcp]) -> None:
    remote, mark = remotes["http"], uuid.uuid4().hex[:12]
    refused = _turn(daemon, {"type": "http", "url": remote.url("locked")}, _shout(mark))
    assert any("MCP server remote refused the CLI as unauthorised" in e for e in _errors(refused)), refused
    assert mark not in remote.calls and [r["is_error"] for r in _tool_results(refused)] == [True]
    signed = _turn(daemon, {"type": "http", "url": remote.url("locked"),
                            "headers": {"Authorization": f"Bearer {TOKEN}"}}, _shout(mark))
    assert mark in remote.calls and not _errors(signed), signed


def test_a_server_the_egress_proxy_refuses_is_an_error_event_not_a_hang(
        daemon: AshdProcess, remotes: dict[str, RemoteMcp]) -> None:
    """The allowlisted server sends the CLI on to a host that is not on the allowlist."""
    remote = remotes["http"]
    events = _turn(daemon, {"type": "http", "url": remote.url("redirect")}, _shout("x"))
    denied = [d for name, d in events if name == "egress" and d["host"] == urlsplit(ELSEWHERE).hostname]
    assert denied and not any(d["allowed"] for d in denied), events
    assert denied[0]["reason"] == "host is not in the agent's egress allowlist"
    assert any("MCP server remote could not be started or reached" in e for e in _errors(events)), events
    assert [r["is_error"] for r in _tool_results(events)] == [True]
    assert [name for name, _ in events][-2:] == ["message", "done"]  # the turn ended with its result


def test_plain_http_and_unlisted_url_servers_are_refused_with_what_to_fix(daemon: AshdProcess,
                                                                          remotes: dict[str, RemoteMcp]) -> None:
    plain = remotes["http"].url().replace("https://", "http://")
    with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=60) as c:
        http = c.post("/api/sessions", json={"agent": "remote", "mcpServers": {"plain": {"url": plain}}})
        unlisted = c.post("/api/sessions", json={"agent": "remote",
                                                 "mcpServers": {"far": {"url": "https://mcp.example.com/mcp"}}})
    assert http.status_code == 400 and "mcpServers.plain:" in http.json()["error"]
    assert "carries https only" in http.json()["error"]
    assert unlisted.status_code == 400
    assert "host mcp.example.com is not on the agent's egress allowlist" in unlisted.json()["error"]
