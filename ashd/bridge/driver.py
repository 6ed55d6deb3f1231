"""Drives one ClaudeSDKClient (one CLI process) across all turns of a session.

Runs on the bridge's asyncio loop. The client must be used inside the task that connected
it (the SDK holds an anyio reader task), so the driver is created, used and closed by the
bridge server's main task.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from claude_agent_sdk import ClaudeAgentOptions, ClaudeSDKClient
from claude_agent_sdk.types import SessionStore

from ashd.bridge import protocol
from ashd.bridge.settings import BridgeSettings

log = logging.getLogger(__name__)

Emit = Callable[[protocol.Event], Awaitable[object]]


def has_transcript(session_id: str, config_dir: str | None) -> bool:
    """Whether the CLI already keeps a transcript of this session under its config dir."""
    if not config_dir:
        return False
    projects = Path(config_dir) / "projects"
    return any(projects.glob(f"*/{session_id}.jsonl"))


def build_options(settings: BridgeSettings, session_store: SessionStore | None = None) -> ClaudeAgentOptions:
    """SDK options for a session. CLAUDE.md is the system prompt, project settings load.

    A session whose transcript exists (a restarted bridge) is resumed: the CLI refuses to
    start a new conversation under an id it already knows. The system prompt is the one ashd
    put in the settings (the session's, or the deployed CLAUDE.md); the workspace's CLAUDE.md,
    which the agent may have edited, is never read for it.
    """
    config_dir = os.environ.get("CLAUDE_CONFIG_DIR")
    resume = has_transcript(settings.session_id, config_dir)
    return ClaudeAgentOptions(
        cwd=settings.workspace,
        system_prompt=settings.system_prompt,
        setting_sources=["project"],
        permission_mode=settings.permission_mode,  # type: ignore[arg-type]
        allowed_tools=list(settings.allowed_tools),
        disallowed_tools=list(settings.disallowed_tools),
        model=settings.model,
        session_id=None if resume else settings.session_id,
        resume=settings.session_id if resume else (settings.fork_from or None),
        fork_session=bool(settings.fork_from) and not resume,
        # Always on at the CLI; the bridge drops stream events for queries that did not ask.
        include_partial_messages=True,
        cli_path=settings.cli_path,
        stderr=_cli_stderr,
        env=_mirror_env(settings.cli_config_dir or config_dir),
        session_store=session_store,
    )


def _mirror_env(cli_config_dir: str | None) -> dict[str, str]:
    # The SDK maps each mirrored transcript path (as the CLI wrote it) relative to
    # options.env's CLAUDE_CONFIG_DIR, not os.environ's: without it every frame is dropped.
    return {"CLAUDE_CONFIG_DIR": cli_config_dir} if cli_config_dir else {}


def _cli_stderr(line: str) -> None:
    # The bridge's stderr is the sandbox log file; the CLI's stderr joins it, tagged.
    sys.stderr.write(f"[cli] {line.rstrip()}\n")
    sys.stderr.flush()


class Driver:
    """One SDK client; one turn at a time (the caller serialises turns)."""

    def __init__(self, settings: BridgeSettings, session_store: SessionStore | None = None) -> None:
        self._settings = settings
        self._client = ClaudeSDKClient(build_options(settings, session_store))
        self._model = settings.model

    async def connect(self) -> None:
        """Spawn the CLI and complete the SDK's initialize handshake. Raises on failure."""
        await self._client.connect()

    async def run_turn(self, query: protocol.Query, emit: Emit) -> None:
        """Send one prompt and emit every SDK message up to and including the result."""
        if query.model and query.model != self._model:
            await self._client.set_model(query.model)
            self._model = query.model
        if isinstance(query.prompt, str):
            await self._client.query(query.prompt, session_id=self._settings.session_id)
        else:
            await self._client.query(_blocks(query.prompt), session_id=self._settings.session_id)
        async for raw in self._raw_messages():
            if raw.get("type") == "stream_event" and not query.include_partial_messages:
                continue
            await emit(protocol.Message(raw))
            if raw.get("type") == "result":
                return

    async def _raw_messages(self) -> AsyncIterator[dict[str, Any]]:
        # Ash streams the CLI's raw messages, not the SDK's parsed dataclasses (which drop
        # fields such as ttft_ms). The SDK exposes the raw stream only on its Query object.
        query = self._client._query
        if query is None:
            raise RuntimeError("SDK client is not connected")
        async for raw in query.receive_messages():
            yield raw

    async def interrupt(self) -> None:
        await self._client.interrupt()

    async def close(self) -> None:
        """Close stdin, let the CLI flush its transcript, then stop it (SDK: ≤ 10 s)."""
        process = _cli_process(self._client)
        await self._client.disconnect()
        if process is not None and process.returncode is not None:
            # The SDK leaves the CLI's stdout pipe open; closed here, while the loop runs,
            # rather than by the garbage collector after asyncio.run closed the loop (which
            # prints "Event loop is closed" tracebacks into the sandbox log).
            await process.aclose()


def _cli_process(client: ClaudeSDKClient) -> Any:
    """The SDK's anyio Process of the CLI, if it has one (private attributes, read defensively)."""
    return getattr(getattr(client, "_transport", None), "_process", None)


async def _blocks(blocks: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    yield {
        "type": "user",
        "message": {"role": "user", "content": blocks},
        "parent_tool_use_id": None,
    }
