"""The stdio MCP server of ``ashctl mcp``: the tools of :mod:`ashd.mcp.tools` over the
``mcp`` package's low-level server.

Every failure of a tool call becomes an MCP tool error (``isError``) whose text says what
went wrong and what to do: arguments that do not match the schema, an unknown tool, the
server's error answer, an unreachable server, a missing API key, a failed turn. Only an
unexpected bug is logged (with its traceback, on stderr) as well.

:func:`serve` blocks the calling thread until the client closes stdin.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping
from typing import Any

import anyio
from mcp import types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

from ashd import __version__
from ashd.client.aio import AsyncAshdClient
from ashd.client.discovery import Target, missing_key_hint
from ashd.client.errors import AshdConnectionError, AshdError
from ashd.client.formatting import sentence_case
from ashd.mcp.arguments import ArgumentError, check
from ashd.mcp.tools import TOOLS, TOOLS_BY_NAME, Progress, Tool, TurnFailed

logger = logging.getLogger(__name__)

INSTRUCTIONS = ("Talk to the Claude agents deployed on an ashd server: list_agents, then "
                "create_session with an agent's name, then send_message with the session's id "
                "(as many turns as you like), list_files/read_file to see what the agent wrote, "
                "and end_session when done.")


def describe(tool: Tool) -> types.Tool:
    """The MCP description of one tool (name, schema, hints)."""
    hints = types.ToolAnnotations(read_only_hint=tool.read_only, open_world_hint=False)
    return types.Tool(name=tool.name, description=tool.description,
                      input_schema=tool.input_schema, annotations=hints)


class ToolCaller:
    """Runs tool calls against one ashd server; used from the server's event loop."""

    def __init__(self, target: Target) -> None:
        """Raise :class:`ValueError` if the target's URL is not an http(s) URL."""
        self._target = target
        self._client = AsyncAshdClient(target.url, target.api_key)

    async def call(self, name: str, arguments: Mapping[str, Any] | None, progress: Progress) -> types.CallToolResult:
        """Run tool ``name``; every failure is a result with ``is_error`` (never raises)."""
        try:
            tool = self._tool(name)
            output = await tool.run(self._client, check(name, tool.input_schema, arguments or {}), progress)
        except (ArgumentError, TurnFailed) as exc:
            return _error(str(exc))
        except AshdError as exc:
            return _error(self._server_error(exc))
        except AshdConnectionError as exc:
            url = self._target.url
            return _error(str(exc) if url in str(exc) else f"cannot reach the ashd server at {url}: {exc}")
        except Exception as exc:  # the boundary: the client must get an answer, not a dead server
            logger.exception("tool %s failed unexpectedly", name)
            return _error(f"{name} failed unexpectedly in ashctl mcp ({type(exc).__name__}: {exc})")
        return types.CallToolResult(content=[types.TextContent(type="text", text=output.text)],
                                    structured_content=output.data)

    def _tool(self, name: str) -> Tool:
        try:
            return TOOLS_BY_NAME[name]
        except KeyError:
            raise ArgumentError(f"unknown tool {name!r}; the tools are: {', '.join(TOOLS_BY_NAME)}") from None

    def _server_error(self, exc: AshdError) -> str:
        if exc.status_code == 401 and self._target.api_key is None:
            return missing_key_hint(self._target)
        origin = f" (key from {self._target.key_source})" if exc.status_code == 401 else ""
        return f"the ashd server answered: {sentence_case(exc.message)} ({exc.status_code}){origin}"


def _error(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


def build_server(caller: ToolCaller) -> Server[Any]:
    """The MCP server: ``tools/list`` gives :data:`TOOLS`, ``tools/call`` runs one."""
    async def list_tools(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[describe(tool) for tool in TOOLS])

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        steps = itertools.count(1)

        async def progress(message: str) -> None:
            await ctx.session.report_progress(next(steps), None, message)  # no-op without a token

        return await caller.call(params.name, params.arguments, progress)

    return Server("ashd", version=__version__, instructions=INSTRUCTIONS,
                  on_list_tools=list_tools, on_call_tool=call_tool)


async def _serve(server: Server[Any]) -> None:
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def serve(target: Target) -> None:
    """Serve MCP on stdin/stdout until the client closes stdin. Blocks; main thread."""
    anyio.run(_serve, build_server(ToolCaller(target)))
