"""``ashctl mcp``: the real stdio MCP server process, driven by the ``mcp`` package's own
client over pipes (no TTY, no inherited stdin), against a real ashd with the hello agent."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client

from ashd.client.agent_files import collect_agent_files
from ashd.client.aio import AsyncAshdClient
from ashd.client.client import AshdClient
from tests.conftest import HELLO_AGENT
from tests.support.daemon import AshdProcess

pytestmark = pytest.mark.e2e

ASHCTL = Path(sys.executable).parent / "ashctl"  # the console script the docs' config runs
DEADLINE_S = 240
TOOLS = {"health", "list_agents", "create_session", "send_message", "list_sessions", "get_session",
         "end_session", "pause_session", "resume_session", "list_files", "read_file"}


def deploy_hello(daemon: AshdProcess) -> None:
    files = [f.to_json() for f in collect_agent_files(HELLO_AGENT)]
    AshdClient(daemon.url, daemon.key).deploy_agent("hello", files=files)


def run_client(tmp_path: Path, env: dict[str, str], script: Callable[[ClientSession], Awaitable[None]]) -> None:
    """Start ``ashctl mcp`` with ``env`` (over a minimal environment), run ``script`` on an
    initialized session; its stderr is kept in ``tmp_path`` for failure messages."""
    params = StdioServerParameters(command=str(ASHCTL), args=["mcp"], env=env, cwd=str(tmp_path))

    async def main() -> None:
        with anyio.fail_after(DEADLINE_S), open(tmp_path / "ashctl-mcp.err", "w") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
                initialized = await session.initialize()
                assert initialized.server_info.name == "ashd"
                await script(session)

    try:
        anyio.run(main)
    except BaseException as exc:
        exc.add_note("ashctl mcp's stderr:\n" + (tmp_path / "ashctl-mcp.err").read_text(errors="replace"))
        raise


def text_of(result: types.CallToolResult) -> str:
    return "".join(block.text for block in result.content if isinstance(block, types.TextContent))


async def ok(session: ClientSession, tool: str, **arguments: Any) -> types.CallToolResult:
    result = await session.call_tool(tool, arguments)
    assert not result.is_error, f"{tool}: {text_of(result)}"
    return result


async def failed(session: ClientSession, tool: str, arguments: Any) -> str:
    result = await session.call_tool(tool, arguments)
    assert result.is_error, f"{tool} should have failed: {text_of(result)}"
    return text_of(result)


def data(result: types.CallToolResult) -> dict[str, Any]:
    assert result.structured_content is not None
    return result.structured_content


async def cancel_a_running_turn(session: ClientSession, daemon: AshdProcess, session_id: str) -> None:
    """Cancel send_message once the agent runs a long command; the turn then ends (the
    interrupt's result; which subtype depends on where in the turn the interrupt lands)
    instead of running on for ten minutes."""
    client = AsyncAshdClient(daemon.url, daemon.key)
    before = len(await result_subtypes(client, session_id))
    with anyio.CancelScope() as call:
        async def cancel_once_bash_runs(done: float, total: float | None, message: str | None) -> None:
            if message == "the agent runs Bash":
                call.cancel()  # the client sends notifications/cancelled

        await session.call_tool("send_message", {"sessionId": session_id, "message": "[[bash: sleep 600]]"},
                                progress_callback=cancel_once_bash_runs)
    assert call.cancelled_caught
    with anyio.fail_after(120):
        while len(await result_subtypes(client, session_id)) == before:
            await anyio.sleep(0.2)


async def result_subtypes(client: AsyncAshdClient, session_id: str) -> list[str]:
    contents = [json.loads(m["content"]) for m in await client.list_messages(session_id, limit=1000)]
    return [c.get("subtype", "") for c in contents if isinstance(c, dict) and c.get("type") == "result"]


def test_agents_as_mcp_tools(ashd_sqlite: AshdProcess, tmp_path: Path) -> None:
    deploy_hello(ashd_sqlite)
    env = {"ASH_SERVER_URL": ashd_sqlite.url, "ASH_DATA_DIR": str(ashd_sqlite.data_dir)}

    async def script(session: ClientSession) -> None:
        listed = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert set(listed) == TOOLS
        send_schema = listed["send_message"].input_schema
        assert send_schema["required"] == ["sessionId", "message"] and send_schema["additionalProperties"] is False
        assert send_schema["properties"]["message"]["type"] == "string"
        assert listed["create_session"].input_schema["required"] == ["agent"]

        agents = data(await ok(session, "list_agents"))["agents"]
        assert [a["name"] for a in agents] == ["hello"]
        session_id = data(await ok(session, "create_session", agent="hello"))["session"]["id"]

        said = await ok(session, "send_message", sessionId=session_id, message="[[say: hello from mcp]]")
        assert text_of(said).strip() == "hello from mcp"
        assert data(said) == {"sessionId": session_id, "reply": text_of(said)}

        progress: list[str | None] = []

        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            progress.append(message)

        bash = {"sessionId": session_id, "message": "[[bash: echo hi > f.txt]]"}
        wrote = await session.call_tool("send_message", bash, progress_callback=on_progress)
        assert not wrote.is_error, text_of(wrote)
        assert "the agent runs Bash" in progress  # a long turn shows signs of life
        paths = [f["path"] for f in data(await ok(session, "list_files", sessionId=session_id))["files"]]
        assert "f.txt" in paths
        read = await ok(session, "read_file", sessionId=session_id, path="f.txt")
        assert text_of(read) == "hi\n" and data(read)["encoding"] == "utf-8"

        await cancel_a_running_turn(session, ashd_sqlite, session_id)
        after = await ok(session, "send_message", sessionId=session_id, message="[[say: after the interrupt]]")
        assert text_of(after).strip() == "after the interrupt"

        missing = await failed(session, "send_message", {"sessionId": session_id})
        assert "missing 'message'" in missing and "sessionId (string, required)" in missing
        assert "unknown argument 'sesion'" in await failed(session, "get_session", {"sesion": session_id})
        assert "unknown tool 'chat'" in await failed(session, "chat", {})
        assert "404" in await failed(session, "read_file", {"sessionId": session_id, "path": "nope.txt"})

        assert data(await ok(session, "pause_session", sessionId=session_id))["session"]["status"] == "paused"
        assert data(await ok(session, "resume_session", sessionId=session_id))["session"]["status"] == "active"
        refused = await failed(session, "send_message", {"sessionId": session_id, "message": "[[error: 403 no entry]]"})
        assert refused.startswith("the turn failed: ") and "403" in refused and f"(session {session_id})" in refused
        assert data(await ok(session, "end_session", sessionId=session_id))["session"]["status"] == "ended"
        after_end = await failed(session, "send_message", {"sessionId": session_id, "message": "hi"})
        assert after_end.startswith("the ashd server answered:") and "ended" in after_end
        ended = data(await ok(session, "list_sessions", agent="hello", status="ended"))["sessions"]
        assert [s["id"] for s in ended] == [session_id]

    run_client(tmp_path, env, script)


def test_without_a_key_every_call_says_where_it_looked_and_how_to_pass_one(
        ashd_sqlite: AshdProcess, tmp_path: Path) -> None:
    nowhere = tmp_path / "no-data-dir"
    env = {"ASH_SERVER_URL": ashd_sqlite.url, "ASH_DATA_DIR": str(nowhere)}

    async def script(session: ClientSession) -> None:
        assert data(await ok(session, "health"))["status"]  # public: works without a key
        message = await failed(session, "list_agents", {})
        assert "requires an API key and none was found" in message
        assert str(nowhere / "initial-api-key") in message and "ASH_API_KEY" in message

    run_client(tmp_path, env, script)

    async def wrong_key(session: ClientSession) -> None:
        message = await failed(session, "list_agents", {})
        assert "(401)" in message and "key from ASH_API_KEY" in message

    run_client(tmp_path, {**env, "ASH_API_KEY": "ash_wrong"}, wrong_key)
