"""/api/sessions: create, list, get, stop, end; messages (SSE) and history."""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import TYPE_CHECKING

from tornado.iostream import StreamClosedError

from ashd.errors import BadRequest, NotFound, Unprocessable
from ashd.http.base import ApiHandler
from ashd.http.turns import Turn
from ashd.http.views import event_json, message_json, session_json
from ashd.options import MessageOptions, SessionOptions, check_agent_name
from ashd.states import SessionStatus
from ashd.store import SessionRow

if TYPE_CHECKING:
    import pykka

    from ashd.actors.session import SessionActor

MAX_MESSAGE_BODY = 50 * 1024 * 1024
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

    async def actor(self, row: SessionRow) -> pykka.ActorProxy[SessionActor]:
        return await self.ctx.offload.ask(self.ctx.tree.sessions.child(row.id, self.tenant))

    @property
    def start_timeout(self) -> float:
        return self.ctx.config.pool.bridge_ready_timeout_s + 30

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


class SessionsHandler(SessionBase):
    async def post(self) -> None:
        body = self.json_body()
        name = check_agent_name(body.get("agent"))
        options = SessionOptions.from_request(body)
        agent = await self.ctx.offload.read(self.ctx.store.get_agent, self.tenant, name)
        if agent is None:
            raise NotFound(f"Agent {name} not found")
        if not await self.ctx.offload.read(os.path.isdir, agent.path):
            raise Unprocessable(f"Agent {name}'s folder {agent.path} is missing on this server; redeploy it")
        session_id = str(uuid.uuid4())
        actor = await self.ctx.offload.ask(self.ctx.tree.sessions.child(session_id, self.tenant))
        row = await self.ctx.offload.ask(actor.create(agent, options), timeout=self.start_timeout)
        self.send_json({"session": session_json(row)}, status=201)

    async def get(self) -> None:
        agent = self.get_query_argument("agent", None)
        status = self.get_query_argument("status", None)
        if status is not None and status not in {s.value for s in SessionStatus}:
            raise BadRequest(f"status must be one of {', '.join(s.value for s in SessionStatus)}")
        rows = await self.ctx.offload.read(self.ctx.store.list_sessions, self.tenant, agent, status)
        self.send_json({"sessions": [session_json(r) for r in rows]})


class SessionHandler(SessionBase):
    async def get(self, session_id: str) -> None:
        self.send_json({"session": session_json(await self.session_row(session_id))})

    async def delete(self, session_id: str) -> None:
        row = await self.session_row(session_id)
        ended = await self.ctx.offload.ask((await self.actor(row)).end_session())
        self.ctx.tree.sessions.forget(row.id)
        self.ctx.links.drop(row.sandbox_id or row.id)
        self.send_json({"session": session_json(ended)})


class SessionStopHandler(SessionBase):
    async def post(self, session_id: str) -> None:
        row = await self.session_row(session_id)
        stopped = await self.ctx.offload.ask((await self.actor(row)).stop_session())
        self.ctx.links.drop(row.sandbox_id or row.id)
        self.send_json({"session": session_json(stopped)})


class MessagesHandler(SessionBase):
    max_body = MAX_MESSAGE_BODY

    async def post(self, session_id: str) -> None:
        options = MessageOptions.from_request(self.json_body())
        row = await self.session_row(session_id)
        actor = await self.actor(row)
        grant = await self.ctx.offload.ask(actor.begin_turn(), timeout=self.start_timeout)
        turn = Turn(self.ctx, self.tenant, grant, actor, options)
        task = asyncio.ensure_future(turn.run())
        self.ctx.turns.add(task)
        task.add_done_callback(self.ctx.turns.discard)
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        async for frame in turn.subscribe():
            try:
                self.write(frame)
                await self.flush()
            except StreamClosedError:
                return  # the client left; the turn runs on and is stored
        self.finish()

    async def get(self, session_id: str) -> None:
        row = await self.session_row(session_id)
        limit = self.int_arg("limit", 100, 1, 1000)
        after = self.int_arg("after", 0, 0, 2**62)
        rows = await self.ctx.offload.read(self.ctx.store.list_messages, self.tenant, row.id, limit, after)
        self.send_json({"messages": [message_json(r) for r in rows]})


class EventsHandler(SessionBase):
    async def get(self, session_id: str) -> None:
        row = await self.session_row(session_id)
        limit = self.int_arg("limit", 200, 1, 1000)
        after = self.int_arg("after", 0, 0, 2**62)
        kind = self.get_query_argument("type", None)
        if kind is not None and kind not in TIMELINE_TYPES:
            raise BadRequest(f"type must be one of {', '.join(TIMELINE_TYPES)}")
        rows = await self.ctx.offload.read(self.ctx.store.list_events, self.tenant, row.id, limit, after, kind)
        self.send_json({"events": [event_json(r) for r in rows]})
