"""GET /health, /health/live and /health/ready (docs/api.md, docs/operations.md).

``/health``: ``status`` is ``ok``, or ``degraded`` while sandbox starts keep failing (see
ashd/actors/vitals.py). Without a valid key (or with a wrong one: probes keep working) the
answer is only ``{status, version, uptime}``, so nothing about any tenant is public, unless
the operator opted into ``server.public_health_figures``: then it adds Ash's public figures
(the pool, live sandboxes, active sessions of all tenants), still nothing per tenant. With a
key that has the ``read`` scope it is Ash's shape plus ``statusReason`` and
``lastStartFailure`` (details only when that failure was the caller's tenant's) and
``supervision`` (restarts per child of the actor tree, failed children);
``activeSessions`` counts the caller's tenant only, the pool figures are process-wide.

``/health/live`` answers 200 while the process serves HTTP at all; ``/health/ready`` answers
200 when it can take sessions (the actor tree answers a ping in time, not shutting down),
else 503 with the reason. Both public, both ``{status, ...}`` without tenant data.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import Any

from ashd import __version__
from ashd.errors import Unauthorized
from ashd.http import scopes
from ashd.http.auth import Principal
from ashd.http.base import ApiHandler
from ashd.http.context import AppContext
from ashd.runtime.facade import readiness
from ashd.store import runner_queries

COORDINATOR_ID = f"{socket.gethostname()}-{os.getpid()}"
READY_PING_S = 2.0  # the actor tree must answer a readiness ping within this


class HealthHandler(ApiHandler):
    def initialize(self, ctx: AppContext, isolation: Callable[[], dict[str, Any]] | None = None) -> None:
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
        verdict = self.ctx.runtime.start_verdict()
        principal = await self.optional_principal()
        public = {"status": verdict.status, "version": __version__, "uptime": uptime}
        if principal is None and not self.ctx.config.server.public_health_figures:
            self.send_json(public)
            return
        figures = await self.pool_figures()
        if principal is None:
            # The operator opted in (server.public_health_figures): Ash's public figures,
            # active sessions of all tenants, nothing about any one tenant.
            active_all = await self.ctx.offload.read(self.ctx.store.count_sessions_with_status, "active")
            self.send_json({**public, "activeSessions": active_all, **figures})
            return
        active = await self.ctx.offload.read(self.ctx.store.list_sessions, principal.tenant_id, None, "active")
        last = verdict.last_failure
        self.send_json({
            **public,
            # ashd's additions: why not ok, and the last failed sandbox start (any time).
            "statusReason": verdict.reason,
            "lastStartFailure": last.to_json(principal.tenant_id) if last is not None else None,
            "coordinatorId": COORDINATOR_ID,
            "activeSessions": len(active),
            **figures,
            # ashd's addition: which sandbox layers are active (docs/security.md), the zygote's state.
            "isolation": self.isolation() if self.isolation is not None else None,
            # ashd's addition: restarts per child of the supervision tree, and children given up on.
            "supervision": self.ctx.runtime.supervision(),
            # ashd's addition: sandbox starts running and waiting for a slot (docs/operations.md, "Load").
            "starts": self.ctx.runtime.admission(),
        })

    async def pool_figures(self) -> dict[str, Any]:
        """Process-wide: ``activeSandboxes``, ``remoteRunners`` and Ash's ``pool`` object."""
        stats = await self.ctx.runtime.pool_stats()
        return {
            "activeSandboxes": stats.total,
            "remoteRunners": await self.remote_runners(),
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
                "preWarmHits": await self.ctx.runtime.prewarm_hits(),
            },
        }


    async def remote_runners(self) -> int:
        """Registered runners heard from in time (coordinators keep the registry; else 0)."""
        if self.ctx.config.server.mode != "coordinator":
            return 0
        store, timeout = self.ctx.store, self.ctx.config.cluster.liveness_timeout_s
        return len(await self.ctx.offload.read(
            lambda: store.read_with(runner_queries.live, runner_queries.cutoff(store.now(), timeout))))


class LiveHandler(ApiHandler):
    """GET /health/live: the process is up and its IOLoop answers (nothing else is asked)."""

    async def get(self) -> None:
        self.send_json({"status": "live", "version": __version__})


class ReadyHandler(ApiHandler):
    """GET /health/ready: 200 when this daemon can take sessions, else 503 with the reason."""

    async def get(self) -> None:
        answered = await self.ctx.runtime.answers(READY_PING_S)
        ready = readiness(answered, self.ctx.stopping, READY_PING_S)
        if ready.ready:
            self.send_json({"status": "ready"})
        else:
            self.send_json({"status": "not ready", "reason": ready.reason}, status=503)
