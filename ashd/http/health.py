"""GET /health: liveness for anyone; Ash's full shape (pool figures) for a valid key.

Without a valid key (or with a wrong one: probes keep working) the answer is only
``{status, version, uptime}``, so nothing about any tenant is public. With a key that has
the ``read`` scope it is Ash's shape; ``activeSessions`` counts the caller's tenant only,
the pool figures are process-wide capacity counters.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from ashd import __version__
from ashd.actors.messages import PoolStats
from ashd.errors import Unauthorized
from ashd.http import scopes
from ashd.http.auth import Principal
from ashd.http.base import ApiHandler
from ashd.http.context import AppContext

COORDINATOR_ID = f"{socket.gethostname()}-{os.getpid()}"


class HealthHandler(ApiHandler):
    def initialize(self, ctx: AppContext, isolation: dict[str, Any] | None = None) -> None:
        super().initialize(ctx)
        self.isolation = isolation

    async def optional_principal(self) -> Principal | None:
        header = self.request.headers.get("Authorization")
        if not header:
            return None
        try:
            principal = await self.ctx.offload.read(self.ctx.hasher.authenticate, header, self.ctx.store)
        except Unauthorized:
            return None
        return principal if scopes.grants(principal.scopes, scopes.READ) else None

    async def get(self) -> None:
        uptime = int(time.monotonic() - self.ctx.started_at)
        principal = await self.optional_principal()
        if principal is None:
            self.send_json({"status": "ok", "version": __version__, "uptime": uptime})
            return
        stats: PoolStats = await self.ctx.offload.ask(self.ctx.tree.pool.stats(), timeout=5)
        active = await self.ctx.offload.read(self.ctx.store.list_sessions, principal.tenant_id, None, "active")
        self.send_json({
            "status": "ok",
            "version": __version__,
            "coordinatorId": COORDINATOR_ID,
            "activeSessions": len(active),
            "activeSandboxes": stats.total,
            "remoteRunners": 0,
            "uptime": uptime,
            "pool": {
                "total": stats.total,
                "cold": stats.cold,
                "warming": stats.warming,
                "warm": stats.warm,
                "waiting": stats.waiting,
                "running": stats.running,
                "maxCapacity": stats.max_capacity,
                "resumeWarmHits": stats.resume_warm,
                "resumeColdHits": stats.resume_cold,
                "preWarmHits": await self.ctx.offload.ask(self.ctx.tree.sessions.prewarm_hits),
            },
            # ashd's addition: which sandbox layers are active (docs/security.md).
            "isolation": self.isolation,
        })
