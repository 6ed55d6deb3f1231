"""Drives one ClaudeSDKClient (one CLI process) across all turns of a session.

Runs on the bridge's asyncio loop. The driver is created, connected and closed by the
bridge server's main task; a turn whose own options need another CLI replaces the client
from the turn's task (the SDK runs its reader as a detached task, with no task affinity,
so the main task can still close it).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from claude_agent_sdk import AgentDefinition, ClaudeAgentOptions, ClaudeSDKClient
from claude_agent_sdk.types import SessionStore

from ashd.wire import protocol
from ashd.wire.settings import BridgeSettings

log = logging.getLogger(__name__)

Emit = Callable[[protocol.Event], Awaitable[object]]


def has_transcript(session_id: str, config_dir: str | None) -> bool:
    """Whether the CLI already keeps a transcript of this session under its config dir."""
    if not config_dir:
        return False
    projects = Path(config_dir) / "projects"
    return any(projects.glob(f"*/{session_id}.jsonl"))


def build_options(settings: BridgeSettings, session_store: SessionStore | None = None,
                  turn: dict[str, Any] | None = None) -> ClaudeAgentOptions:
    """SDK options for a session. CLAUDE.md is the system prompt, project settings load.

    ``turn`` holds one message's own options (``protocol.TURN_SETTINGS``, wire names); each
    is a CLI flag, fixed for the life of the CLI process.

    A session whose transcript exists (a restarted bridge) is resumed: the CLI refuses to
    start a new conversation under an id it already knows. The system prompt is the one ashd
    put in the settings (the session's, or the deployed CLAUDE.md); the workspace's CLAUDE.md,
    which the agent may have edited, is never read for it.
    """
    config_dir = os.environ.get("CLAUDE_CONFIG_DIR")
    resume = has_transcript(settings.session_id, config_dir)
    return ClaudeAgentOptions(
        cwd=settings.workspace,
        # An initial agent's own prompt is the main thread's (the CLI uses it only without one).
        system_prompt=None if settings.initial_agent else settings.system_prompt,
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
        mcp_servers=settings.mcp_servers,  # type: ignore[arg-type]
        betas=list(settings.betas),  # type: ignore[arg-type]
        agents={name: AgentDefinition(**spec) for name, spec in settings.subagents.items()} or None,
        extra_args={"agent": settings.initial_agent} if settings.initial_agent else {},
        **_turn_options(turn or {}),
    )


def _turn_options(turn: dict[str, Any]) -> dict[str, Any]:
    """One message's options as ClaudeAgentOptions fields."""
    return {"max_turns": turn.get("maxTurns"), "max_budget_usd": turn.get("maxBudgetUsd"),
            "effort": turn.get("effort"), "thinking": turn.get("thinking"), "output_format": turn.get("outputFormat")}


def _mirror_env(cli_config_dir: str | None) -> dict[str, str]:
    # The SDK maps each mirrored transcript path (as the CLI wrote it) relative to
    # options.env's CLAUDE_CONFIG_DIR, not os.environ's: without it every frame is dropped.
    return {"CLAUDE_CONFIG_DIR": cli_config_dir} if cli_config_dir else {}


def _cli_stderr(line: str) -> None:
    # The bridge's stderr is the sandbox log file; the CLI's stderr joins it, tagged.
    sys.stderr.write(f"[cli] {line.rstrip()}\n")
    sys.stderr.flush()


class ModelChoice:
    """Which model each turn runs on (pure): the message's, else the session's, else the
    agent's default. A message's model is for its turn only, but a CLI keeps the model it
    was last set to — even across a restart, which resumes the conversation on it — so
    the turn after one is set back: to the session's model, or to the default model
    learned from the ``init`` message of a turn that ran on it (``set_model(None)``, the
    CLI's built-in default, only if none was seen yet).
    """

    def __init__(self, session_model: str | None) -> None:
        self._session = session_model
        self._current = session_model  # what the running CLI is on, as far as we know
        self._default: str | None = None
        self._overridden = False  # a message's model may still be in effect
        self._on_default = session_model is None

    def restarted(self) -> None:
        """A new CLI resumed the conversation: started with the session's model, if there is
        one (set it again to be sure), else on the last model the conversation ran on."""
        if self._session is not None:
            self._current = None

    def for_turn(self, message_model: str | None) -> tuple[bool, str | None]:
        """(whether to call set_model, the model to set) before a turn."""
        wanted = message_model or self._session
        self._on_default = wanted is None
        if wanted is None:
            if not self._overridden:
                return False, None
            self._overridden, self._current = False, self._default
            return True, self._default
        self._overridden = wanted != self._session
        if wanted == self._current:
            return False, wanted
        self._current = wanted
        return True, wanted

    def observed(self, raw: dict[str, Any]) -> None:
        """Learn the default model from a turn that ran on it."""
        if self._on_default and raw.get("type") == "system" and raw.get("subtype") == "init":
            model = raw.get("model")
            self._default = model if isinstance(model, str) and model else self._default


class Driver:
    """One SDK client; one turn at a time (the caller serialises turns).

    A message's own options (``query.settings``: maxTurns, maxBudgetUsd, effort, thinking,
    outputFormat) are CLI flags the SDK cannot change on a running CLI, so a turn whose
    settings differ from the running CLI's restarts it with them (the conversation resumes
    from its transcript); the next turn without them restarts it again. A per-message
    ``model`` needs no restart (the SDK's ``set_model``).
    """

    def __init__(self, settings: BridgeSettings, session_store: SessionStore | None = None) -> None:
        self._settings = settings
        self._store = session_store
        self._turn: dict[str, Any] = {}
        self._client = ClaudeSDKClient(build_options(settings, session_store))
        self._models = ModelChoice(settings.model)

    async def connect(self) -> None:
        """Spawn the CLI and complete the SDK's initialize handshake. Raises on failure."""
        await self._client.connect()

    async def _restart(self, turn: dict[str, Any]) -> None:
        """Replace the CLI by one started with this turn's options (resuming the conversation)."""
        log.info("restarting the CLI for a turn with options %s", ", ".join(sorted(turn)) or "none")
        await self.close()
        self._client = ClaudeSDKClient(build_options(self._settings, self._store, turn))
        self._turn = turn
        self._models.restarted()
        await self._client.connect()

    async def run_turn(self, query: protocol.Query, emit: Emit) -> None:
        """Send one prompt and emit every SDK message up to and including the result."""
        if query.settings != self._turn:
            await self._restart(query.settings)
        change, model = self._models.for_turn(query.model)
        if change:
            await self._client.set_model(model)
        if isinstance(query.prompt, str):
            await self._client.query(query.prompt, session_id=self._settings.session_id)
        else:
            await self._client.query(_blocks(query.prompt), session_id=self._settings.session_id)
        async for raw in self._raw_messages():
            if raw.get("type") == "stream_event" and not query.include_partial_messages:
                continue
            self._models.observed(raw)
            await emit(protocol.Message(raw))
            for problem in _unavailable_mcp_servers(raw):
                await emit(protocol.Error(problem))
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


# What the CLI's init message reports per MCP server status, when its tools are missing.
_UNAVAILABLE = {
    "failed": "could not be started or reached from the sandbox",
    # The CLI's status for a 403, or a 401 with OAuth metadata: it wants an interactive sign-in.
    "needs-auth": "refused the CLI as unauthorised (HTTP 401/403) and ashd cannot sign in interactively; "
                  "pass its credentials in mcpServers.{name}.headers",
}


def _unavailable_mcp_servers(raw: dict[str, Any]) -> list[str]:
    """One sentence per MCP server the CLI's init message reports as unusable."""
    if raw.get("type") != "system" or raw.get("subtype") != "init":
        return []
    problems = []
    for server in raw.get("mcp_servers") or []:
        why = _UNAVAILABLE.get(str(server.get("status"))) if isinstance(server, dict) else None
        if why is not None:
            name = str(server.get("name"))
            problems.append(f"MCP server {name} {why.format(name=name)}; its tools are not available in this turn")
    return problems


def _cli_process(client: ClaudeSDKClient) -> Any:
    """The SDK's anyio Process of the CLI, if it has one (private attributes, read defensively)."""
    return getattr(getattr(client, "_transport", None), "_process", None)


async def _blocks(blocks: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    yield {
        "type": "user",
        "message": {"role": "user", "content": blocks},
        "parent_tool_use_id": None,
    }
