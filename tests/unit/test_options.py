"""Issue #13.1: every option Ash's clients send is accepted, stored and validated.

Malformed values are a 400 (BadRequest) whose message names the field and says what to
send; well-formed ones come out in the shape the bridge hands to the Claude Agent SDK.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ashd.bridge.driver import _unavailable_mcp_servers, build_options
from ashd.errors import BadRequest
from ashd.options import MessageOptions, SessionOptions, check_tunnelled
from ashd.sandbox.agent_fit import check_for_agent
from ashd.wire import protocol
from ashd.wire.settings import BridgeSettings

SESSION: dict[str, Any] = {
    "agent": "a",
    "mcpServers": {"files": {"command": "node", "args": ["srv.js"], "env": {"K": "v"}},
                   "docs": {"url": "https://mcp.example.com/mcp", "type": "sse", "headers": {"X-T": "1"}}},
    "betas": ["context-1m-2025-08-07"],
    "subagents": {"reviewer": {"description": "Reviews", "prompt": "You review.", "tools": ["Read"],
                               "maxTurns": 2, "effort": "low"}},
    "initialAgent": "reviewer",
    "allowedTools": ["Read"], "disallowedTools": ["Bash"], "permissionMode": "default", "model": "m",
    "systemPrompt": "be brief",
}


def test_session_options_are_kept_and_round_trip() -> None:
    opts = SessionOptions.from_request(SESSION)
    assert opts.mcp_servers == {"files": {"type": "stdio", "command": "node", "args": ["srv.js"], "env": {"K": "v"}},
                                "docs": {"type": "sse", "url": "https://mcp.example.com/mcp",
                                         "headers": {"X-T": "1"}}}
    assert opts.betas == ["context-1m-2025-08-07"] and opts.initial_agent == "reviewer"
    assert opts.subagents["reviewer"]["maxTurns"] == 2
    assert SessionOptions.from_json(json.loads(json.dumps(opts.to_json()))) == opts  # stored in session config
    assert SessionOptions.from_request(opts.to_request()) == opts  # PATCH merges through this


def test_session_options_reach_the_sdk_options() -> None:
    opts = SessionOptions.from_request(SESSION)
    settings = BridgeSettings("s", "/sock", "/w", mcp_servers=opts.mcp_servers, betas=opts.betas,
                              subagents=opts.subagents, initial_agent=opts.initial_agent)
    sdk = build_options(settings)
    assert sdk.mcp_servers == opts.mcp_servers and sdk.betas == ["context-1m-2025-08-07"]
    assert sdk.agents is not None and sdk.agents["reviewer"].prompt == "You review."
    assert sdk.agents["reviewer"].tools == ["Read"] and sdk.extra_args == {"agent": "reviewer"}


def test_message_options_reach_the_sdk_options_for_their_turn() -> None:
    msg = MessageOptions.from_request({"content": "x", "maxTurns": 2, "maxBudgetUsd": 0.5, "effort": "max",
                                       "thinking": {"type": "enabled", "budgetTokens": 2048},
                                       "outputFormat": {"type": "json_schema", "schema": {"type": "object"}}})
    turn = msg.turn_settings()
    query = protocol.decode_command(protocol.encode(protocol.Query("x", settings=turn)))
    assert isinstance(query, protocol.Query) and query.settings == turn
    sdk = build_options(BridgeSettings("s", "/sock", "/w"), turn=query.settings)
    assert (sdk.max_turns, sdk.max_budget_usd, sdk.effort) == (2, 0.5, "max")
    assert sdk.thinking == {"type": "enabled", "budget_tokens": 2048}
    assert sdk.output_format == {"type": "json_schema", "schema": {"type": "object"}}
    assert MessageOptions.from_request({"content": "x"}).turn_settings() == {}


@pytest.mark.parametrize(("body", "says"), [
    ({"maxTurns": 0}, "maxTurns must be a whole number from 1"),
    ({"maxTurns": "3"}, "maxTurns must be a whole number"),
    ({"maxTurns": True}, "maxTurns must be a whole number"),
    ({"maxBudgetUsd": -1}, "maxBudgetUsd must be a positive number"),
    ({"effort": "extreme"}, "effort must be one of low, medium, high"),
    ({"thinking": "on"}, "thinking must be an object with type"),
    ({"thinking": {"type": "enabled"}}, "needs budgetTokens"),
    ({"thinking": {"type": "adaptive", "budgetTokens": 5}}, "only for type enabled"),
    ({"thinking": {"type": "enabled", "budget_tokens": 5}}, "unknown field"),
    ({"outputFormat": {"type": "json_schema"}}, 'outputFormat must be {"type": "json_schema"'),
    ({"outputFormat": {"type": "text", "schema": {}}}, "outputFormat must be"),
    ({"outputFormat": {"type": "json_schema", "schema": {"type": 5}}}, "schema is not a valid JSON Schema"),
    ({"outputFormat": {"type": "json_schema", "schema": {"properties": {"a": {"type": "nonsense"}}}}},
     "not a valid JSON Schema at properties/a/type"),
])
def test_malformed_message_options_say_what_to_fix(body: dict[str, Any], says: str) -> None:
    with pytest.raises(BadRequest, match=says):
        MessageOptions.from_request({"content": "x", **body})


@pytest.mark.parametrize(("body", "says"), [
    ({"mcpServers": []}, "mcpServers must be an object"),
    ({"mcpServers": {"bad name": {"command": "x"}}}, "mcpServers name 'bad name'"),
    ({"mcpServers": {"x": {}}}, "mcpServers.x needs exactly one of command"),
    ({"mcpServers": {"x": {"command": "a", "url": "https://h"}}}, "exactly one of command"),
    ({"mcpServers": {"x": {"url": "ftp://h/x"}}}, r"mcpServers.x.url must be an http\(s\) URL"),
    ({"mcpServers": {"x": {"url": "https://h", "type": "ws"}}}, "a url server takes url, type"),
    ({"mcpServers": {"x": {"command": "a", "args": "b"}}}, "mcpServers.x.args must be a list"),
    ({"betas": "context-1m"}, "betas must be a list"),
    ({"betas": ["Bad Beta"]}, "betas must be a list"),
    ({"subagents": {"r": {"prompt": "p"}}}, "subagents.r.description must be a non-empty string"),
    ({"subagents": {"r": {"description": "d", "prompt": "p", "hooks": {}}}}, "subagents.r has unknown field"),
    ({"subagents": {"r": {"description": "d", "prompt": "p", "maxTurns": 0}}}, "subagents.r.maxTurns"),
    ({"subagents": {"r": {"description": "d", "prompt": "p", "permissionMode": "yolo"}}},
     "subagents.r.permissionMode must be one of"),
    ({"initialAgent": "../x"}, "initialAgent must be 1-64"),
])
def test_malformed_session_options_say_what_to_fix(body: dict[str, Any], says: str) -> None:
    with pytest.raises(BadRequest, match=says):
        SessionOptions.from_request(body)


def test_url_mcp_servers_must_be_on_the_agents_egress_allowlist(tmp_path: Path) -> None:
    (tmp_path / ".ashd").mkdir()
    (tmp_path / ".ashd" / "sandbox.json").write_text(json.dumps({"egress": {"allow": ["*.example.com"]}}))
    allowed = SessionOptions.from_request({"mcpServers": {"a": {"url": "https://mcp.example.com/x"},
                                                          "local": {"command": "srv"}}})
    check_for_agent(allowed, str(tmp_path))
    refused = SessionOptions.from_request({"mcpServers": {"evil": {"url": "https://evil.test/x"}}})
    with pytest.raises(BadRequest, match=r"mcpServers\.evil: host evil\.test is not on the agent's egress allowlist"):
        check_for_agent(refused, str(tmp_path))
    with pytest.raises(BadRequest, match=r"allowlist \(empty\)"):
        check_for_agent(allowed, str(tmp_path / "nowhere"))


def test_a_sandbox_reaches_url_mcp_servers_over_https_only() -> None:
    """The egress proxy tunnels (CONNECT): a plain-http server could not be reached through it."""
    plain = SessionOptions.from_request({"mcpServers": {"tls": {"url": "https://a.test/mcp"},
                                                        "plain": {"type": "sse", "url": "http://a.test/sse"}}})
    with pytest.raises(BadRequest, match=r"mcpServers\.plain: .* carries https only; serve it over https"):
        check_tunnelled(plain, sandboxed=True)
    check_tunnelled(plain, sandboxed=False)  # no sandbox, no proxy: the CLI connects itself
    check_tunnelled(SessionOptions.from_request({"mcpServers": {"tls": {"url": "https://a.test/mcp"},
                                                                "local": {"command": "srv"}}}), sandboxed=True)


def test_mcp_servers_the_cli_cannot_use_are_named_with_what_to_do() -> None:
    init = {"type": "system", "subtype": "init", "mcp_servers": [
        {"name": "up", "status": "connected"}, {"name": "down", "status": "failed"},
        {"name": "locked", "status": "needs-auth"}, {"name": "later", "status": "pending"}, "junk"]}
    down, locked = _unavailable_mcp_servers(init)
    assert down.startswith("MCP server down could not be started or reached from the sandbox")
    assert "MCP server locked refused the CLI as unauthorised" in locked and "mcpServers.locked.headers" in locked
    assert _unavailable_mcp_servers({**init, "subtype": "status"}) == []


def test_the_initial_agent_must_be_defined(tmp_path: Path) -> None:
    check_for_agent(SessionOptions.from_request({**SESSION, "mcpServers": None}), str(tmp_path))  # a subagent
    folder_agent = SessionOptions.from_request({"initialAgent": "planner"})
    with pytest.raises(BadRequest, match="initialAgent 'planner' is neither in subagents nor in"):
        check_for_agent(folder_agent, str(tmp_path))
    (tmp_path / ".claude" / "agents").mkdir(parents=True)
    (tmp_path / ".claude" / "agents" / "planner.md").write_text("---\nname: planner\n---\nPlan.\n")
    check_for_agent(folder_agent, str(tmp_path))


def test_a_messages_model_is_for_its_turn_only() -> None:
    """The CLI keeps the model it was set to (across restarts too): the turn after a
    message's own model is set back to the session's, or to the default it had seen."""
    from ashd.bridge.driver import ModelChoice

    session = ModelChoice("claude-sonnet-4-5")
    assert session.for_turn(None) == (False, "claude-sonnet-4-5")
    assert session.for_turn("claude-haiku-4-5") == (True, "claude-haiku-4-5")
    assert session.for_turn(None) == (True, "claude-sonnet-4-5")
    session.restarted()
    assert session.for_turn(None) == (True, "claude-sonnet-4-5")

    default = ModelChoice(None)
    assert default.for_turn(None) == (False, None)
    default.observed({"type": "system", "subtype": "init", "model": "claude-opus-5-5"})
    assert default.for_turn("claude-haiku-4-5") == (True, "claude-haiku-4-5")
    default.observed({"type": "system", "subtype": "init", "model": "claude-haiku-4-5"})  # not the default
    default.restarted()
    assert default.for_turn(None) == (True, "claude-opus-5-5")
    assert default.for_turn(None) == (False, None)
