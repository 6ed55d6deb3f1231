"""GET /api/usage and /api/usage/stats: what the model proxy metered (Ash's shapes).

Filters: ``sessionId``, ``agentName``, ``after``, ``before`` (ISO-8601 timestamps) and, for
the list, ``limit`` (1-1000, default 100). Always scoped to the caller's tenant. Usage still
queued for a turn's last commit (``ashd/store/usage_queue.py``) is written first, so a reader
sees every model call metered before its request.
"""

from __future__ import annotations

from ashd.errors import BadRequest
from ashd.http.base import ApiHandler
from ashd.store.usage import UsageFilter

MAX_LIMIT = 1000


async def write_queued(handler: ApiHandler) -> None:
    """Write the usage still queued, before a read of usage (here and ``/api/analytics``)."""
    await handler.ctx.offload.write(handler.ctx.store.write_queued_usage)


class _UsageHandler(ApiHandler):
    def usage_filter(self) -> UsageFilter:
        arg = self.get_query_argument
        limit_text = arg("limit", "100") or "100"
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_LIMIT:
            raise BadRequest(f"limit must be an integer from 1 to {MAX_LIMIT}")
        return UsageFilter(self.tenant, arg("sessionId", None) or None, arg("agentName", None) or None,
                           arg("after", None) or None, arg("before", None) or None, int(limit_text))


class UsageHandler(_UsageHandler):
    async def get(self) -> None:
        flt = self.usage_filter()
        await write_queued(self)
        events = await self.ctx.offload.read(self.ctx.store.list_usage, flt)
        self.send_json({"events": events})


class UsageStatsHandler(_UsageHandler):
    async def get(self) -> None:
        flt = self.usage_filter()
        await write_queued(self)
        stats = await self.ctx.offload.read(self.ctx.store.usage_stats, flt)
        self.send_json({"stats": stats})
