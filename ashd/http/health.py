"""GET /health: public liveness and pool figures (Ash's shape; no per-tenant data)."""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from ashd import __version__
from ashd.actors.messages import PoolStats
from ashd.http.base import ApiHandler
from ashd.http.context import AppContext

COORDINATOR_ID = f"{socket.gethostname()}-{os.getpid()}"


class HealthHandler(ApiHandler):
    def initialize(self, ctx: AppContext, isolation: dict[str, Any] | None = None) -> None:
        super().initialize(ctx)
        self.isolation = isolation

    async def get(self) -> None:
        stats: PoolStats = await self.ctx.offload.ask(self.ctx.tree.pool.stats(), timeout=5)
        active = await self.ctx.offload.read(self.ctx.store.list_sessions_by_status, ["active"])
        self.send_json({
            "status": "ok",
            "version": __version__,
            "coordinatorId": COORDINATOR_ID,
            "activeSessions": len(active),
            "activeSandboxes": stats.total,
            "remoteRunners": 0,
            "uptime": int(time.monotonic() - self.ctx.started_at),
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
