"""Issue #13.1: every option Ash's clients send is honoured (real daemon, CLI, sandbox).

Each test asserts on what the CLI did with the option: the request the scripted model
received (model, effort, thinking, tools, system prompt, betas header) or the turn's
outcome (maxTurns, maxBudgetUsd, outputFormat). Per-message options apply to their turn
only: the next turn without them is checked too.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from ashd.scripted.recorder import RecordedRequest
from ashd.scripted.server import ScriptedModel
from tests.conftest import HELLO_AGENT
from tests.support.daemon import AshdProcess, sse_events

pytestmark = pytest.mark.e2e
PROBE = Path(__file__).with_name("mcp_probe.py")
Events = list[tuple[str, Any]]


def _client(daemon: AshdProcess) -> httpx.Client:
    return httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=180)


def _session(c: httpx.Client, agent: str = "hello", **options: Any) -> str:
    resp = c.post("/api/sessions", json={"agent": agent, **options})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["session"]["id"])


def _turn(c: httpx.Client, sid: str, content: str, **options: Any) -> Events:
    with c.stream("POST", f"/api/sessions/{sid}/messages", json={"content": content, **options}) as r:
        assert r.status_code == 200, r.read()
        return sse_events(r.read().decode())


def _result(events: Events) -> dict[str, Any]:
    results = [d for name, d in events if name == "message" and d.get("type") == "result"]
    assert len(results) == 1, events
    return results[0]


def _asked(model: ScriptedModel, marker: str) -> list[RecordedRequest]:
    """The main-loop model requests that carry ``marker`` in their newest user message: the
    first request of the turn whose prompt holds it (later turns have it in their history)."""
    return [r for r in model.requests() if r.path == "/v1/messages" and isinstance(r.body, dict)
            and r.body.get("tools") and marker in json.dumps(_last_user(r.body.get("messages") or []))]


def _carrying(model: ScriptedModel, marker: str) -> int:
    """How many model requests carry ``marker`` anywhere in their messages."""
    return sum(1 for r in model.requests() if r.path == "/v1/messages" and isinstance(r.body, dict)
               and marker in json.dumps(r.body.get("messages")))


def _last_user(messages: list[dict[str, Any]]) -> Any:
    users = [m for m in messages if m.get("role") == "user"]
    return users[-1] if users else None


def _deploy(c: httpx.Client, name: str = "hello", path: Path = HELLO_AGENT) -> None:
    c.post("/api/agents", json={"name": name, "path": str(path)}).raise_for_status()


def test_message_options_reach_the_model_for_their_turn_only(ashd_sqlite: AshdProcess,
                                                             scripted_model: ScriptedModel) -> None:
    with _client(ashd_sqlite) as c:
        _deploy(c)
        sid = _session(c)
        mark = uuid.uuid4().hex
        _turn(c, sid, f"{mark}-effort [[say: a]]", effort="low")
        # A fixed thinking budget is what a haiku model gets (newer models think adaptively).
        _turn(c, sid, f"{mark}-thinking [[say: b]]", model="claude-haiku-4-5",
              thinking={"type": "enabled", "budgetTokens": 3000})
        _turn(c, sid, f"{mark}-plain [[say: c]]")
    effort, = _asked(scripted_model, f"{mark}-effort")
    thinking, = _asked(scripted_model, f"{mark}-thinking")
    plain, = _asked(scripted_model, f"{mark}-plain")
    assert effort.body["output_config"]["effort"] == "low"
    assert thinking.body["model"] == "claude-haiku-4-5"
    assert thinking.body["thinking"]["budget_tokens"] == 3000
    # The next turn has none of them again.
    assert plain.body.get("output_config", {}).get("effort") not in (None, "low")
    assert plain.body["model"] != "claude-haiku-4-5"
    assert plain.body["thinking"].get("budget_tokens") != 3000
    # The CLI restarts that carried them kept the conversation.
    assert f"{mark}-effort" in json.dumps(plain.body["messages"]) and f"{mark}-thinking" in json.dumps(
        plain.body["messages"])


def test_max_turns_stops_the_turn_and_only_that_turn(ashd_sqlite: AshdProcess) -> None:
    chain = "[[bash: echo one]] [[bash: echo two]] [[say: finished]]"
    with _client(ashd_sqlite) as c:
        _deploy(c)
        sid = _session(c)
        limited = _result(_turn(c, sid, chain, maxTurns=1))
        free = _result(_turn(c, sid, chain))
    assert limited["subtype"] == "error_max_turns", limited
    assert free["subtype"] == "success" and free["result"] == "finished", free


def test_max_budget_usd_stops_the_turn_and_only_that_turn(ashd_sqlite: AshdProcess,
                                                          scripted_model: ScriptedModel) -> None:
    mark = uuid.uuid4().hex
    costly = f"{mark} [[usage: in=200000 out=100]] [[bash: echo spent]] [[say: not reached]]"
    with _client(ashd_sqlite) as c:
        _deploy(c)
        sid = _session(c)
        stopped = _turn(c, sid, costly, maxBudgetUsd=0.01)
        asked = _carrying(scripted_model, mark)
        after = _result(_turn(c, sid, "[[bash: echo again]] [[say: next turn runs]]"))
    text = json.dumps(stopped)
    assert "not reached" not in text and "budget" in text, stopped
    assert asked == 1  # the tool result never went back to the model
    assert after["subtype"] == "success" and after["result"] == "next turn runs", after


def test_output_format_puts_structured_output_in_the_result(ashd_sqlite: AshdProcess,
                                                            scripted_model: ScriptedModel) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
    mark = uuid.uuid4().hex
    with _client(ashd_sqlite) as c:
        _deploy(c)
        sid = _session(c)
        events = _turn(c, sid, f'{mark} [[tool: StructuredOutput {{"answer": 42}}]]',
                       outputFormat={"type": "json_schema", "schema": schema})
        plain = _turn(c, sid, f"{mark}-plain [[say: free text]]")
    result = _result(events)
    assert result["subtype"] == "success" and result["structured_output"] == {"answer": 42}, result
    tools = [t["name"] for t in _asked(scripted_model, mark)[0].body["tools"]]
    assert "StructuredOutput" in tools
    assert "StructuredOutput" not in [t["name"] for t in _asked(scripted_model, f"{mark}-plain")[0].body["tools"]]
    assert _result(plain).get("structured_output") is None


def test_session_options_reach_the_model_and_patch_changes_them(ashd_sqlite: AshdProcess,
                                                                scripted_model: ScriptedModel) -> None:
    mark = uuid.uuid4().hex
    subagents = {"reviewer": {"description": f"Reviews code {mark}", "prompt": "You review code."}}
    with _client(ashd_sqlite) as c:
        _deploy(c)
        sid = _session(c, model="claude-sonnet-4-5", systemPrompt=f"You are agent {mark}.",
                       disallowedTools=["Bash"], betas=["context-1m-2025-08-07"], subagents=subagents,
                       permissionMode="default", allowedTools=["Read"])
        _turn(c, sid, f"{mark}-1 [[say: a]]")
        patched = c.patch(f"/api/sessions/{sid}/config", json={"disallowedTools": ["Write"], "betas": []})
        assert patched.status_code == 200, patched.text
        _turn(c, sid, f"{mark}-2 [[say: b]]")
    first, = _asked(scripted_model, f"{mark}-1")
    second, = _asked(scripted_model, f"{mark}-2")
    names = [t["name"] for t in first.body["tools"]]
    assert first.body["model"] == "claude-sonnet-4-5"
    assert f"You are agent {mark}." in json.dumps(first.body["system"])
    assert "Bash" not in names and "Write" in names
    assert "context-1m-2025-08-07" in first.headers.get("anthropic-beta", "")
    assert f"Reviews code {mark}" in json.dumps(first.body)  # the Agent tool offers the subagent
    later = [t["name"] for t in second.body["tools"]]
    assert "Write" not in later
    # Bash is offered again: as a tool, or (the CLI keeps the tool list of a running
    # conversation stable) as a deferred tool named in the turn's reminder.
    assert "Bash" in later or "\\nBash\\n" in json.dumps(second.body["messages"])
    assert "context-1m-2025-08-07" not in second.headers.get("anthropic-beta", "")


def test_initial_agent_runs_the_main_thread_as_that_subagent(ashd_sqlite: AshdProcess,
                                                             scripted_model: ScriptedModel) -> None:
    mark = uuid.uuid4().hex
    subagents = {"pirate": {"description": "Talks like a pirate", "prompt": f"You are pirate {mark}."}}
    with _client(ashd_sqlite) as c:
        _deploy(c)
        sid = _session(c, subagents=subagents, initialAgent="pirate")
        _turn(c, sid, f"{mark} [[say: arr]]")
    asked, = _asked(scripted_model, mark)
    assert f"You are pirate {mark}." in json.dumps(asked.body["system"])


def test_a_stdio_mcp_server_runs_inside_the_sandbox(ashd_sqlite: AshdProcess, tmp_path: Path) -> None:
    agent = tmp_path / "mcp-agent"
    shutil.copytree(HELLO_AGENT, agent)
    shutil.copy(PROBE, agent / "mcp_probe.py")
    servers = {"probe": {"command": "/usr/bin/python3", "args": ["/workspace/mcp_probe.py"]}}
    with _client(ashd_sqlite) as c:
        _deploy(c, "mcp", agent)
        sid = _session(c, "mcp", mcpServers=servers, allowedTools=["mcp__probe__where"])
        result = _result(_turn(c, sid, "[[tool: mcp__probe__where {}]]"))
    said = str(result["result"])
    assert "probe cwd=/workspace" in said, result
    assert "uid=0" not in said  # the sandbox's own user, not root


def test_an_mcp_server_that_cannot_start_is_an_error_event_not_a_hang(ashd_sqlite: AshdProcess) -> None:
    servers = {"broken": {"command": "/nonexistent/mcp-server"}}
    with _client(ashd_sqlite) as c:
        _deploy(c)
        sid = _session(c, mcpServers=servers)
        events = _turn(c, sid, "[[say: still answers]]")
    errors = [d["error"] for name, d in events if name == "error"]
    assert any("MCP server broken" in e for e in errors), events
    assert _result(events)["result"] == "still answers"


def test_url_mcp_servers_off_the_egress_allowlist_are_refused(ashd_sqlite: AshdProcess) -> None:
    servers = {"remote": {"url": "https://mcp.example.com/mcp"}}
    with _client(ashd_sqlite) as c:
        _deploy(c)
        created = c.post("/api/sessions", json={"agent": "hello", "mcpServers": servers})
        sid = _session(c)
        patched = c.patch(f"/api/sessions/{sid}/config", json={"mcpServers": servers})
    for resp in (created, patched):
        assert resp.status_code == 400, resp.text
        assert "host mcp.example.com is not on the agent's egress allowlist" in resp.json()["error"]


def test_malformed_options_are_400s_that_say_what_to_fix(ashd_sqlite: AshdProcess) -> None:
    with _client(ashd_sqlite) as c:
        _deploy(c)
        sid = _session(c)
        bad_turn = c.post(f"/api/sessions/{sid}/messages", json={"content": "x", "effort": "extreme"})
        bad_session = c.post("/api/sessions", json={"agent": "hello", "subagents": {"r": {"prompt": "p"}}})
    assert bad_turn.status_code == 400 and "effort must be one of" in bad_turn.json()["error"]
    assert bad_session.status_code == 400 and "subagents.r.description" in bad_session.json()["error"]


def test_ash_sdk_sends_its_options_and_ashd_honours_them(ashd_sqlite: AshdProcess,
                                                         scripted_model: ScriptedModel) -> None:
    """Ash's own Python client: create_session(allowed_tools=...) and
    send_message_stream(max_turns=..., effort=...) are accepted and applied."""
    from ash_sdk import AshClient
    from ash_sdk.streaming import MessageEvent

    client = AshClient(ashd_sqlite.url, token=ashd_sqlite.key)
    client.deploy_agent("sdk-opts", str(HELLO_AGENT))
    session = client.create_session("sdk-opts", allowed_tools=["Read"], disallowed_tools=["Write"],
                                    betas=["context-1m-2025-08-07"])
    assert session.status == "active"
    mark = uuid.uuid4().hex
    events = list(client.send_message_stream(session.id, f"{mark} [[bash: echo 1]] [[say: done]]",
                                             max_turns=1, effort="low"))
    results = [e.data for e in events if isinstance(e, MessageEvent) and e.data.get("type") == "result"]
    assert [r["subtype"] for r in results] == ["error_max_turns"]
    asked = _asked(scripted_model, mark)[0]
    assert asked.body["output_config"]["effort"] == "low"
    assert "Write" not in [t["name"] for t in asked.body["tools"]]


def test_command_mcp_servers_are_refused_without_a_sandbox(start_ashd: Callable[..., AshdProcess]) -> None:
    """Without isolation the CLI would start a caller's command on the host, as ashd's user."""
    daemon = start_ashd(None, ASH_SANDBOX_ISOLATION="none")
    with _client(daemon) as c:
        _deploy(c)
        created = c.post("/api/sessions", json={"agent": "hello", "mcpServers": {"x": {"command": "/bin/true"}}})
    assert created.status_code == 400 and "mcpServers.x: a command server runs inside" in created.json()["error"]
