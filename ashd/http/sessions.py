"""/api/sessions: create, list, get, stop, end; messages (SSE) and history."""

from __future__ import annotations

import dataclasses
import os
import time
import uuid
from typing import Any

from ashd.errors import BadRequest, NotFound, SandboxFailed, Unprocessable
from ashd.events import SSEEvent
from ashd.http import sse
from ashd.http.base import ApiHandler
from ashd.http.views import event_json, message_json, session_json
from ashd.options import CONFIG_FIELDS, MessageOptions, SessionOptions, check_agent_name, check_tunnelled
from ashd.runtime.facade import SessionView
from ashd.sandbox.agent_fit import check_for_agent
from ashd.states import SessionStatus
from ashd.store import AgentRow, SessionRow
from ashd.store.vault import CredentialVault

MAX_MESSAGE_BODY = 50 * 1024 * 1024
MAX_SEQ = 2**31 - 1
"""The largest sequence or event id a session can have (a 32-bit INTEGER column on Postgres)."""
TIMELINE_TYPES = ("text", "tool_start", "tool_result", "reasoning", "turn_complete", "error", "lifecycle")


def check_session_id(raw: str) -> str:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise BadRequest(f"session id must be a UUID, got {raw!r}") from None


class SessionBase(ApiHandler):
    async def session_row(self, raw_id: str) -> SessionRow:
        row = await self.ctx.offload.read(self.ctx.store.get_session, self.tenant, check_session_id(raw_id))
        if row is None:
            raise NotFound(f"Session {raw_id} not found")
        return row

    async def live_session_id(self, raw_id: str) -> str:
        """The session's id; 404 unless the tenant has it. One the runtime holds live for this
        tenant needs no store read (the session's actor answers for the rest)."""
        sid = check_session_id(raw_id)
        if self.ctx.runtime.holds(self.tenant, sid):
            return sid
        return (await self.session_row(raw_id)).id

    async def view(self, row: SessionRow) -> dict[str, Any]:
        """The session's JSON, with whether its CLI is warm or parked."""
        sandbox = await self.ctx.offload.read(self.ctx.store.get_sandbox, row.sandbox_id or row.id)
        warm = {row.id} if sandbox is not None and sandbox.state != "cold" else set()
        return session_json(row, warm)

    @staticmethod
    def known_view(view: SessionView) -> dict[str, Any]:
        """The session's JSON as its actor answered a pause or resume (no sandbox read)."""
        return session_json(view.row, {view.row.id} if view.warm else set())

    def int_arg(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.get_query_argument(name, None)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise BadRequest(f"{name} must be an integer") from None
        if not low <= value <= high:
            raise BadRequest(f"{name} must be between {low} and {high}")
        return value

    def check_mcp_confined(self, options: SessionOptions) -> None:
        """400 for a command MCP server when there is no sandbox to start it in."""
        stdio = sorted(name for name, server in options.mcp_servers.items() if "command" in server)
        if stdio and self.ctx.config.sandbox.isolation == "none":
            raise BadRequest(f"mcpServers.{stdio[0]}: a command server runs inside the session's sandbox, and this "
                             "ashd runs without sandbox isolation (sandbox.isolation = none); use a url server")
        check_tunnelled(options, sandboxed=self.ctx.config.sandbox.isolation != "none")


class SessionsHandler(SessionBase):
    async def post(self) -> None:
        body = self.json_body()
        name = check_agent_name(body.get("agent"))
        agent, options = await self.ctx.offload.read(self.fitted, name, SessionOptions.from_request(body))
        # Nothing session-specific asked: a pre-warmed sandbox of this agent may serve.
        plain = options == SessionOptions() and not (set(body) - {"agent"})
        row = await self.ctx.runtime.create(self.tenant, agent, options, may_use_prewarmed=plain)
        self.send_json({"session": session_json(row, {row.id})}, status=201)  # its CLI just started

    def fitted(self, name: str, options: SessionOptions) -> tuple[AgentRow, SessionOptions]:
        """On a reader thread (one hop for every check that reads): the tenant's agent (404 if
        unknown, 422 if its folder is gone), the credential (400), the options against this
        ashd and the agent (400); then the system prompt by precedence: the request's > the
        agent's active version's > CLAUDE.md. Fixed here, at creation: activating another
        version later changes only new sessions."""
        agent, active = self.ctx.store.agent_and_prompt(self.tenant, name)
        if agent is None:
            raise NotFound(f"Agent {name} not found")
        if not os.path.isdir(agent.path):
            raise Unprocessable(f"Agent {name}'s folder {agent.path} is missing on this server; redeploy it")
        if options.credential_id is not None:
            self.check_credential(options.credential_id)
        self.check_mcp_confined(options)
        check_for_agent(options, agent.path)
        if options.system_prompt is None and active:
            options = dataclasses.replace(options, system_prompt=active)
        return agent, options

    def check_credential(self, credential_id: str) -> None:
        """400 unless the credential can be this session's upstream key (see ashd/store/vault.py)."""
        if self.ctx.config.sandbox.isolation == "none":
            raise BadRequest("bad credential: credentialId needs the model proxy, and this ashd runs without "
                             "sandbox isolation (sandbox.isolation = none)")
        CredentialVault(self.ctx.store, self.ctx.config.auth.credential_key).check_for_session(self.tenant,
                                                                                             credential_id)

    async def get(self) -> None:
        agent = self.get_query_argument("agent", None)
        status = self.get_query_argument("status", None)
        if status is not None and status not in {s.value for s in SessionStatus}:
            raise BadRequest(f"status must be one of {', '.join(s.value for s in SessionStatus)}")
        rows = await self.ctx.offload.read(self.ctx.store.list_sessions, self.tenant, agent, status)
        warm = await self.ctx.offload.read(self.ctx.store.warm_session_ids)
        self.send_json({"sessions": [session_json(r, warm) for r in rows]})


class SessionHandler(SessionBase):
    async def get(self, session_id: str) -> None:
        self.send_json({"session": await self.view(await self.session_row(session_id))})

    async def delete(self, session_id: str) -> None:
        row = await self.session_row(session_id)
        ended = await self.ctx.runtime.end(self.tenant, row.id)
        self.send_json({"session": await self.view(ended)})


class SessionStopHandler(SessionBase):
    async def post(self, session_id: str) -> None:
        row = await self.session_row(session_id)
        stopped = await self.ctx.runtime.stop(self.tenant, row.id)
        self.send_json({"session": await self.view(stopped)})


class SessionPauseHandler(SessionBase):
    async def post(self, session_id: str) -> None:
        paused = await self.ctx.runtime.pause(self.tenant, await self.live_session_id(session_id))
        self.send_json({"session": self.known_view(paused)})


class SessionResumeHandler(SessionBase):
    """Warm when the agent process is alive, cold otherwise (files + conversation restored)."""

    async def post(self, session_id: str) -> None:
        resumed = await self.ctx.runtime.resume(self.tenant, await self.live_session_id(session_id))
        self.send_json({"session": self.known_view(resumed)})


class SessionForkHandler(SessionBase):
    async def post(self, session_id: str) -> None:
        row = await self.session_row(session_id)
        child = await self.ctx.runtime.fork(self.tenant, row.id)
        self.send_json({"session": await self.view(child)}, status=201)


class SessionConfigHandler(SessionBase):
    """PATCH /api/sessions/:id/config: model, tools, ... for later turns (patch-merge)."""

    async def patch(self, session_id: str) -> None:
        body = self.json_body()
        unknown = sorted(set(body) - set(CONFIG_FIELDS))
        if unknown:
            raise BadRequest(f"unknown session config field(s): {', '.join(unknown)}; "
                             f"known: {', '.join(CONFIG_FIELDS)}")
        row = await self.session_row(session_id)
        merged = SessionOptions.from_request({**SessionOptions.from_json(row.config).to_request(), **body})
        agent = await self.ctx.offload.read(self.ctx.store.get_agent, self.tenant, row.agent_name)
        self.check_mcp_confined(merged)
        if agent is not None:
            await self.ctx.offload.read(check_for_agent, merged, agent.path)
        updated = await self.ctx.runtime.configure(self.tenant, row.id, body)
        self.send_json({"session": await self.view(updated)})


class MessagesHandler(SessionBase):
    max_body = MAX_MESSAGE_BODY

    async def post(self, session_id: str) -> None:
        options = MessageOptions.from_request(self.json_body())
        runtime = self.ctx.runtime
        sid = await self.live_session_id(session_id)
        try:
            turn = await runtime.send(self.tenant, sid, options,
                                      received_at=time.monotonic() - self.request.request_time())
        except SandboxFailed as exc:
            await self.start_failed(sid, exc)
            return
        sse.start(self)
        if await sse.relay(self, runtime.turn_stream(turn, batched=True)):
            self.finish()
        # else: the client left; the turn runs on and is stored

    async def start_failed(self, session_id: str, exc: SandboxFailed) -> None:
        """The agent process this message needed (a parked session's wake) did not start: the
        stream says why and ends, as a turn whose agent died does (``error`` + ``done``).
        Nothing is stored; the session's status says whether the restart policy gave up."""
        sse.start(self)
        error = SSEEvent("error", {"error": f"the session's agent process could not start: {exc.message}"})
        for event in (error, SSEEvent("done", {"sessionId": session_id})):
            if not await sse.send(self, event.encode()):
                return
        self.finish()

    async def get(self, session_id: str) -> None:
        row = await self.session_row(session_id)
        limit = self.int_arg("limit", 100, 1, 1000)
        after = self.int_arg("after", 0, 0, MAX_SEQ)
        rows = await self.ctx.offload.read(self.ctx.store.list_messages, self.tenant, row.id, limit, after)
        self.send_json({"messages": [message_json(r) for r in rows]})


class EventsHandler(SessionBase):
    async def get(self, session_id: str) -> None:
        row = await self.session_row(session_id)
        limit = self.int_arg("limit", 200, 1, 1000)
        after = self.int_arg("after", 0, 0, MAX_SEQ)
        kind = self.get_query_argument("type", None)
        if kind is not None and kind not in TIMELINE_TYPES:
            raise BadRequest(f"type must be one of {', '.join(TIMELINE_TYPES)}")
        rows = await self.ctx.offload.read(self.ctx.store.list_events, self.tenant, row.id, limit, after, kind)
        self.send_json({"events": [event_json(r) for r in rows]})


class StreamHandler(SessionBase):
    """GET /api/sessions/:id/stream: replay stored events after ``Last-Event-ID`` (or
    ``?after=``), then follow the running turn, if any, to its ``done``.

    With ``?follow=true`` (ashd's addition) the stream stays open after that: heartbeat
    comments while the session is idle, each new turn's events as they happen, until the
    session ends or the client goes away."""

    async def get(self, session_id: str) -> None:
        row = await self.session_row(session_id)
        header = self.request.headers.get("Last-Event-ID")
        after = self.int_arg("after", 0, 0, MAX_SEQ) if header is None else _event_id(header)
        follow = self._follow_flag()
        sse.start(self)
        if await sse.relay(self, self.ctx.runtime.subscribe(self.tenant, row.id, after, follow=follow, batched=True)):
            self.finish()
        # else: the client left

    def _follow_flag(self) -> bool:
        raw = self.get_query_argument("follow", "false")
        if raw not in ("true", "false", "1", "0"):
            raise BadRequest("follow must be true or false")
        return raw in ("true", "1")


class InterruptHandler(SessionBase):
    """POST /api/sessions/:id/interrupt: stop the running turn; the session stays usable."""

    async def post(self, session_id: str) -> None:
        row = await self.session_row(session_id)
        await self.ctx.runtime.interrupt(self.tenant, row.id)
        self.send_json({"interrupted": True, "sessionId": row.id})


def _event_id(raw: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise BadRequest("Last-Event-ID must be an event id (an integer) from this stream") from None
    if not 0 <= value <= MAX_SEQ:
        raise BadRequest(f"Last-Event-ID must be between 0 and {MAX_SEQ}")
    return value
