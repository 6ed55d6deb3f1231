"""Standard-library-only client for ashd (and Ash) servers.

Importing this package pulls in nothing outside the standard library, so it
can be installed and used without the daemon's dependencies::

    from ashd.client import AshdClient

    client = AshdClient("http://127.0.0.1:4100", api_key="ash_...")
    session = client.create_session("my-agent")
    for event in client.send_message(session["id"], "Hello"):
        if event.event == "text_delta":
            print(event.data["delta"], end="", flush=True)
"""

from ashd.client.agent_files import AgentFile, AgentFolderError, collect_agent_files
from ashd.client.client import AshdClient
from ashd.client.discovery import Target, missing_key_hint, resolve_target
from ashd.client.errors import AshdConnectionError, AshdError
from ashd.client.sse import SSEEvent, SSEParser, SSEProtocolError, iter_sse

__all__ = [
    "AgentFile",
    "AgentFolderError",
    "AshdClient",
    "AshdConnectionError",
    "AshdError",
    "SSEEvent",
    "SSEParser",
    "SSEProtocolError",
    "Target",
    "collect_agent_files",
    "iter_sse",
    "missing_key_hint",
    "resolve_target",
]
