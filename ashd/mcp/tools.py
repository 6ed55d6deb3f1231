"""The tools ``ashctl mcp`` offers: name, description, input schema, and what each one does.

Each tool is one or a few calls of :class:`~ashd.client.aio.AsyncAshdClient` (the
names and shapes follow Ash's ``@ash-ai/mcp-server``, plus the workspace's files).
A tool's ``run`` coroutine gets arguments already checked against its schema and
returns an :class:`Output`; it raises :class:`~ashd.client.errors.AshdError` /
:class:`~ashd.client.errors.AshdConnectionError` from the client, and
:class:`TurnFailed` when a turn ends in an error. A cancelled ``send_message`` (the MCP
client's ``notifications/cancelled``) interrupts the agent's turn. No ``mcp`` import here.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio

from ashd.client import calls
from ashd.client.aio import AsyncAshdClient
from ashd.client.errors import AshdConnectionError, AshdError
from ashd.client.events import ToolUse
from ashd.mcp.reply import Reply
from ashd.states import SessionStatus

logger = logging.getLogger(__name__)

Args = Mapping[str, Any]
INTERRUPT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Output:
    """A tool's answer: ``text`` for the model to read, ``data`` as structured content."""

    text: str
    data: dict[str, Any]


class TurnFailed(Exception):
    """A ``send_message`` turn ended with an error event or an error result."""

    def __init__(self, session_id: str, failure: str, partial: str) -> None:
        super().__init__(f"{failure} (session {session_id})"
                         + (f"\nThe reply so far:\n{partial}" if partial else ""))


Progress = Callable[[str], Awaitable[None]]
"""Tells the MCP client how a long call is going (a no-op when it asked for no progress)."""
Runner = Callable[[AsyncAshdClient, Args, Progress], Awaitable[Output]]


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    run: Runner
    properties: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    read_only: bool = False

    @property
    def input_schema(self) -> dict[str, Any]:
        """The JSON Schema of the arguments (no argument outside ``properties``)."""
        return {"type": "object", "properties": dict(self.properties),
                "required": list(self.required), "additionalProperties": False}


def _string(description: str) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "description": description}


SESSION_ID = {"sessionId": _string("the session's id (from create_session or list_sessions)")}


def _json(data: dict[str, Any]) -> Output:
    return Output(json.dumps(data, indent=2), data)


async def _health(client: AsyncAshdClient, args: Args, progress: Progress) -> Output:
    return _json(await client.health())


async def _list_agents(client: AsyncAshdClient, args: Args, progress: Progress) -> Output:
    return _json({"agents": await client.list_agents()})


async def _create_session(client: AsyncAshdClient, args: Args, progress: Progress) -> Output:
    session = await client.create_session(args["agent"], model=args.get("model"),
                                          system_prompt=args.get("systemPrompt"))
    return _json({"session": session})


async def _send_message(client: AsyncAshdClient, args: Args, progress: Progress) -> Output:
    session_id = args["sessionId"]
    options = {"model": args["model"]} if "model" in args else {}
    reply = Reply()
    try:
        async for event in client.send_message(session_id, args["message"], **options):
            reply.add(event)
            if isinstance(event, ToolUse):
                await progress(f"the agent runs {event.name}")
    except anyio.get_cancelled_exc_class():
        await _interrupt(client, session_id)  # the MCP client gave up on the call: so does the agent
        raise
    if reply.failure is not None:
        raise TurnFailed(session_id, reply.failure, reply.text)
    return Output(reply.text, {"sessionId": session_id, "reply": reply.text})


async def _interrupt(client: AsyncAshdClient, session_id: str) -> None:
    """Stop the session's running turn; shielded from the cancellation being handled."""
    with anyio.CancelScope(shield=True) as scope:
        scope.deadline = anyio.current_time() + INTERRUPT_TIMEOUT_S
        try:
            await client.call(calls.interrupt(session_id))
        except (AshdError, AshdConnectionError) as exc:  # e.g. 409: the turn had just ended
            logger.warning("could not interrupt the turn of session %s after the call was cancelled: %s",
                           session_id, exc)


async def _list_sessions(client: AsyncAshdClient, args: Args, progress: Progress) -> Output:
    return _json({"sessions": await client.list_sessions(args.get("agent"), args.get("status"))})


async def _get_session(client: AsyncAshdClient, args: Args, progress: Progress) -> Output:
    return _json({"session": await client.get_session(args["sessionId"])})


async def _end_session(client: AsyncAshdClient, args: Args, progress: Progress) -> Output:
    return _json({"session": await client.end_session(args["sessionId"])})


def _action(verb: Literal["pause", "resume"]) -> Runner:
    async def run(client: AsyncAshdClient, args: Args, progress: Progress) -> Output:
        return _json({"session": await client.session_action(args["sessionId"], verb)})
    return run


async def _list_files(client: AsyncAshdClient, args: Args, progress: Progress) -> Output:
    answer = await client.list_files(args["sessionId"], include_hidden=args.get("includeHidden", True))
    return _json(answer)


async def _read_file(client: AsyncAshdClient, args: Args, progress: Progress) -> Output:
    path = args["path"]
    data = await client.read_file(args["sessionId"], path)
    try:
        return Output(data.decode("utf-8"), {"path": path, "size": len(data), "encoding": "utf-8",
                                             "content": data.decode("utf-8")})
    except UnicodeDecodeError:
        encoded = base64.b64encode(data).decode("ascii")
        return Output(f"{path} is a binary file of {len(data)} bytes; base64:\n{encoded}",
                      {"path": path, "size": len(data), "encoding": "base64", "content": encoded})


TOOLS: tuple[Tool, ...] = (
    Tool("health", "The ashd server's health: status, sessions, sandboxes, isolation.",
         _health, read_only=True),
    Tool("list_agents", "The agents deployed on the server (name, version, ...).",
         _list_agents, read_only=True),
    Tool("create_session", "Start a session with an agent; returns the session (its id is "
         "what send_message takes).", _create_session,
         {"agent": _string("the agent's name (see list_agents)"),
          "model": _string("model for the session (default: the agent's)"),
          "systemPrompt": _string("replaces the agent's CLAUDE.md prompt")}, ("agent",)),
    Tool("send_message", "Send a message to a session and wait for the agent's whole turn; "
         "returns the assistant's reply text.", _send_message,
         {**SESSION_ID, "message": _string("the message to the agent"),
          "model": _string("model for this turn")}, ("sessionId", "message")),
    Tool("list_sessions", "The sessions; optionally only one agent's, or only those in one state.",
         _list_sessions,
         {"agent": _string("only this agent's sessions"),
          "status": {"enum": [str(s) for s in SessionStatus], "description": "only sessions in this state"}},
         read_only=True),
    Tool("get_session", "One session: status, agent, timestamps.", _get_session, SESSION_ID,
         ("sessionId",), read_only=True),
    Tool("end_session", "End a session for good (its sandbox is destroyed).", _end_session,
         SESSION_ID, ("sessionId",)),
    Tool("pause_session", "Pause a session (its sandbox is kept; resume_session continues it).",
         _action("pause"), SESSION_ID, ("sessionId",)),
    Tool("resume_session", "Resume a paused or stopped session.", _action("resume"), SESSION_ID,
         ("sessionId",)),
    Tool("list_files", "The files in a session's workspace (path, size, modified time).", _list_files,
         {**SESSION_ID, "includeHidden": {"type": "boolean", "description": "include dot-files (default true)"}},
         ("sessionId",), read_only=True),
    Tool("read_file", "Read one file of a session's workspace (UTF-8 text, else base64).", _read_file,
         {**SESSION_ID, "path": _string("the file's path inside the workspace (see list_files)")},
         ("sessionId", "path"), read_only=True),
)

TOOLS_BY_NAME: Mapping[str, Tool] = {tool.name: tool for tool in TOOLS}
