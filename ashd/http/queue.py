"""/api/queue: enqueue prompts, list, stats, get, cancel (the worker is queue_worker.py)."""

from __future__ import annotations

import uuid
from typing import Any

from ashd.errors import BadRequest, Conflict, NotFound, RateLimited
from ashd.http.base import ApiHandler
from ashd.http.keyed_locks import KeyedLocks
from ashd.options import MAX_PROMPT_CHARS, check_agent_name
from ashd.states import SessionStatus
from ashd.store.queue_queries import STATUSES, NewItem, QueueItemRow

MAX_PRIORITY = 1_000_000
MAX_RETRIES = 10
DEFAULT_RETRIES = 3
MAX_LIST = 500
_enqueuing = KeyedLocks()  # tenant id -> its enqueues, one at a time (the waiting bound holds)
_FIELDS = {"agentName", "prompt", "sessionId", "priority", "maxRetries"}


def item_json(row: QueueItemRow) -> dict[str, Any]:
    return {
        "id": row.id, "tenantId": row.tenant_id, "sessionId": row.session_id, "agentName": row.agent_name,
        "prompt": row.prompt, "status": row.status, "priority": row.priority, "retryCount": row.retry_count,
        "maxRetries": row.max_retries, "error": row.error, "retryAfter": row.retry_after,
        "startedAt": row.started_at, "completedAt": row.completed_at, "createdAt": row.created_at,
    }


def _int(body: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest(f"{name} must be an integer from {low} to {high}")
    return value


def parse_enqueue(tenant_id: str, body: dict[str, Any]) -> NewItem:
    """Pure validation of ``POST /api/queue``. Raises BadRequest naming what to fix."""
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise BadRequest(f"unknown queue field(s): {', '.join(unknown)}")
    agent = check_agent_name(body.get("agentName"))
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise BadRequest("prompt must be a non-empty string")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise BadRequest(f"prompt is longer than {MAX_PROMPT_CHARS} characters")
    session = body.get("sessionId")
    if session is not None:
        session = _uuid(session, "sessionId")
    return NewItem(tenant_id, agent, prompt, session, _int(body, "priority", 0, -MAX_PRIORITY, MAX_PRIORITY),
                   _int(body, "maxRetries", DEFAULT_RETRIES, 0, MAX_RETRIES))


def _uuid(raw: object, what: str) -> str:
    if isinstance(raw, str):
        try:
            return str(uuid.UUID(raw))
        except ValueError:
            pass
    raise BadRequest(f"{what} must be a UUID")


class QueueHandler(ApiHandler):
    async def post(self) -> None:
        item = parse_enqueue(self.tenant, self.json_body())
        read, store = self.ctx.offload.read, self.ctx.store
        if await read(store.get_agent, self.tenant, item.agent_name) is None:
            raise NotFound(f"Agent {item.agent_name} not found")
        if item.session_id is not None:
            session = await read(store.get_session, self.tenant, item.session_id)
            if session is None:
                raise NotFound(f"Session {item.session_id} not found")
            if session.agent_name != item.agent_name:
                raise BadRequest(f"Session {session.id} belongs to agent {session.agent_name}, "
                                 f"not {item.agent_name}")
            if session.status == SessionStatus.ENDED.value:
                raise BadRequest(f"Session {session.id} has ended; queue into another session or none")
        async with _enqueuing(self.tenant):
            await self._check_room()
            row = await self.ctx.offload.write(store.enqueue, item)
        self.ctx.queue_wakeup.set()
        self.send_json({"item": item_json(row)}, status=201)

    async def _check_room(self) -> None:
        """429 when the tenant has as many prompts waiting (pending or running) as it may."""
        most = self.ctx.config.queue.max_waiting_per_tenant
        counts = await self.ctx.offload.read(self.ctx.store.queue_stats, self.tenant)
        if counts["pending"] + counts["processing"] >= most:
            raise RateLimited(f"{most} prompts of this tenant are waiting in the queue, the most it may hold "
                              "(queue.max_waiting_per_tenant, ASH_QUEUE_MAX_WAITING); retry once some have run", 30)

    async def get(self) -> None:
        status = self.get_query_argument("status", None)
        if status is not None and status not in STATUSES:
            raise BadRequest(f"status must be one of {', '.join(STATUSES)}")
        raw = self.get_query_argument("limit", None)
        try:
            limit = 50 if raw is None else int(raw)
        except ValueError:
            raise BadRequest("limit must be an integer") from None
        if not 1 <= limit <= MAX_LIST:
            raise BadRequest(f"limit must be between 1 and {MAX_LIST}")
        rows = await self.ctx.offload.read(self.ctx.store.list_queue_items, self.tenant, status, limit)
        self.send_json({"items": [item_json(r) for r in rows]})


class QueueStatsHandler(ApiHandler):
    async def get(self) -> None:
        stats = await self.ctx.offload.read(self.ctx.store.queue_stats, self.tenant)
        self.send_json({"stats": stats})


class QueueItemHandler(ApiHandler):
    async def _row(self, raw_id: str) -> QueueItemRow:
        row = await self.ctx.offload.read(self.ctx.store.get_queue_item, self.tenant, _uuid(raw_id, "queue item id"))
        if row is None:
            raise NotFound(f"Queue item {raw_id} not found")
        return row

    async def get(self, item_id: str) -> None:
        self.send_json({"item": item_json(await self._row(item_id))})

    async def delete(self, item_id: str) -> None:
        row = await self._row(item_id)
        if not await self.ctx.offload.write(self.ctx.store.cancel_queue_item, self.tenant, row.id):
            current = await self._row(item_id)
            raise Conflict(f"Queue item is {current.status}; only pending items can be cancelled")
        self.send_json({"item": item_json(await self._row(item_id))})
