"""Standard-library-only client for ashd (and Ash) servers.

Importing this package pulls in nothing outside the standard library, so it
can be installed and used without the daemon's dependencies::

    from ashd.client import AshdClient

    client = AshdClient("http://127.0.0.1:4100", api_key="ash_...")
    session = client.create_session("my-agent")
    for event in client.send_message(session["id"], "Hello"):
        if isinstance(event, TextDelta):
            print(event.delta, end="", flush=True)

Streams are typed (:mod:`ashd.client.events`) and resume by themselves after a dropped
connection, delivering every event exactly once. :class:`AsyncAshdClient` is the
asyncio twin; every route is a :class:`~ashd.client.calls.Call` in :mod:`ashd.client.calls`.
"""

from ashd.client.agent_files import AgentFile, AgentFolderError, collect_agent_files
from ashd.client.aio import AsyncAshdClient
from ashd.client.client import AshdClient
from ashd.client.discovery import Target, missing_key_hint, resolve_target
from ashd.client.errors import AshdConnectionError, AshdError
from ashd.client.events import (
    Done,
    Error,
    Message,
    SessionStart,
    StreamEvent,
    TextDelta,
    ThinkingDelta,
    ToolResult,
    ToolUse,
    TurnComplete,
)
from ashd.client.sse import SSEEvent, SSEParser, SSEProtocolError, iter_sse

__all__ = [
    "AgentFile",
    "AgentFolderError",
    "AshdClient",
    "AshdConnectionError",
    "AshdError",
    "AsyncAshdClient",
    "Done",
    "Error",
    "Message",
    "SSEEvent",
    "SSEParser",
    "SSEProtocolError",
    "SessionStart",
    "StreamEvent",
    "Target",
    "TextDelta",
    "ThinkingDelta",
    "ToolResult",
    "ToolUse",
    "TurnComplete",
    "collect_agent_files",
    "iter_sse",
    "missing_key_hint",
    "resolve_target",
]
