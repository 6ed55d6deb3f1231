"""The tool-call boundary: whatever goes wrong, the MCP client gets a tool error, not a dead server."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from ashd.client.aio import AsyncAshdClient
from ashd.client.discovery import Target
from ashd.mcp import server
from ashd.mcp.tools import TOOLS_BY_NAME, Output, Tool


async def no_progress(message: str) -> None:
    return None


def call(name: str, arguments: dict[str, Any]) -> Any:
    caller = server.ToolCaller(Target("http://127.0.0.1:9", "ash_key", "ASH_API_KEY"))
    return anyio.run(caller.call, name, arguments, no_progress)


def test_a_bug_in_a_tool_is_a_tool_error_that_names_it(monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    async def broken(client: AsyncAshdClient, args: Any, progress: Any) -> Output:
        raise RuntimeError("boom")

    monkeypatch.setattr(server, "TOOLS_BY_NAME", {"broken": Tool("broken", "always fails", broken)})
    result = call("broken", {})
    assert result.is_error
    assert result.content[0].text == "broken failed unexpectedly in ashctl mcp (RuntimeError: boom)"
    assert "tool broken failed unexpectedly" in caplog.text  # with its traceback, on stderr


def test_an_unreachable_server_is_a_tool_error_naming_it() -> None:
    result = call("list_agents", {})
    assert result.is_error and "http://127.0.0.1:9" in result.content[0].text


def test_tools_say_which_ones_only_read() -> None:
    hints = {name: server.describe(tool).annotations for name, tool in TOOLS_BY_NAME.items()}
    assert all(hint is not None for hint in hints.values())
    read_only = {name for name, hint in hints.items() if hint and hint.read_only_hint}
    assert read_only == {"health", "list_agents", "list_sessions", "get_session", "list_files", "read_file"}
