"""The runner registry's routes on coordinators (Ash's paths and bodies; docs/scale-out.md).

Runner-facing, ``Authorization: Bearer <ASH_INTERNAL_SECRET>`` only (fail closed: 401):

- ``POST /api/internal/runners/register {runnerId, host, port, maxSandboxes}`` ->
  ``{ok, runnerId, generation, livenessTimeoutS}`` (the runner fences itself within that timeout)
- ``POST /api/internal/runners/heartbeat {runnerId, stats, activeCount, generation?}`` -> ``{ok}``;
  404 when the runner is not registered (swept, or registered again under a newer
  generation): unlike Ash, whose heartbeat silently updates nothing, the runner then
  registers again at once.
- ``POST /api/internal/runners/deregister {runnerId, generation?}`` -> ``{ok, pausedSessions}``
  (idempotent; its live sessions are paused at once).

Operator-facing, the internal secret or an ``admin`` key of the operator's own tenant
(``default``: ASH_API_KEY, the bootstrap key; other tenants' keys get 403, since runners serve
every tenant): ``GET /api/internal/runners`` (Ash's ``{count, hasLocal, runners}``) and
``POST /api/internal/runners/:id/drain`` / ``undrain``.

Handlers are thin: bodies are checked here, the registry is ``ashd/store/runner_queries.py``.
"""

from __future__ import annotations

import hmac
import logging
import re
from typing import Any

from ashd.errors import BadRequest, Conflict, Forbidden, NotFound
from ashd.http import scopes
from ashd.http.auth import DEFAULT_TENANT, Principal
from ashd.http.base import ApiHandler
from ashd.http.internal import InternalHandler
from ashd.http.keys import check_fields
from ashd.store import RunnerRow
from ashd.store import runner_queries as rq

log = logging.getLogger(__name__)

RUNNER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
HOST = re.compile(r"^[A-Za-z0-9._:\[\]-]{1,253}$")  # a name, an IPv4 or a bracketed/bare IPv6 address
DEFAULT_MAX_SANDBOXES = 100  # Ash's, when a runner sends none
MAX_COUNT = 1_000_000


def runner_id_of(body: dict[str, Any]) -> str:
    value = body.get("runnerId")
    if not isinstance(value, str) or not RUNNER_ID.match(value):
        raise BadRequest("runnerId is required: 1-128 letters, digits, '.', '_' or '-', starting with a "
                         "letter or digit")
    return value


def _count(body: dict[str, Any], field: str, default: int | None, low: int = 0, high: int = MAX_COUNT) -> int:
    value = body.get(field, default)
    if value is None or isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest(f"{field} must be an integer from {low} to {high}")
    return value


def _generation(body: dict[str, Any]) -> int | None:
    return None if body.get("generation") is None else _count(body, "generation", None, 1, 2**31 - 1)


def runner_json(row: RunnerRow, now: str, alive_after: str) -> dict[str, Any]:
    """Ash's entry (runnerId, host, port, active, max, lastHeartbeat) and ashd's additions."""
    return {"runnerId": row.id, "host": row.host, "port": row.port, "active": row.active_count,
            "max": row.max_sandboxes, "lastHeartbeat": row.last_heartbeat_at,
            "warming": row.warming_count, "free": row.free, "generation": row.generation,
            "draining": row.draining, "registeredAt": row.registered_at,
            "lastHeartbeatAgeS": round(rq.age_s(row.last_heartbeat_at, now), 3),
            "alive": row.last_heartbeat_at > alive_after}


class RunnerFacingHandler(InternalHandler):
    """The routes runners call: the internal secret only, on a coordinator only. Not rate
    limited once authenticated: every runner shares the secret, and a cluster's heartbeats
    would soon exceed one key's budget (a wrong secret is still throttled by address)."""

    rate_limited = False

    async def prepare(self) -> None:
        await super().prepare()
        mode = self.ctx.config.server.mode
        if mode != "coordinator":
            raise Conflict(f"This ashd runs in {mode} mode and keeps no runner registry: runners register "
                           "with a coordinator (ASH_MODE=coordinator; docs/scale-out.md)")


class RunnerRegisterHandler(RunnerFacingHandler):
    async def post(self) -> None:
        body = self.json_body()
        check_fields(body, {"runnerId", "host", "port", "maxSandboxes"})
        runner_id = runner_id_of(body)
        host = body.get("host")
        if not isinstance(host, str) or not HOST.match(host):
            raise BadRequest("host is required: the name or address coordinators reach the runner at "
                             "(letters, digits, '.', '-', ':' or brackets; at most 253)")
        port = _count(body, "port", None, 1, 65535)
        most = _count(body, "maxSandboxes", DEFAULT_MAX_SANDBOXES, 1)
        store = self.ctx.store
        row = await self.ctx.offload.write(lambda: store.write_with(rq.register, runner_id, host, port, most,
                                                                    store.now()))
        log.info("runner %s registered at %s:%d (at most %d sandboxes, generation %d)", row.id, row.host,
                 row.port, row.max_sandboxes, row.generation)
        self.send_json({"ok": True, "runnerId": row.id, "generation": row.generation,
                        "livenessTimeoutS": self.ctx.config.cluster.liveness_timeout_s})


class RunnerHeartbeatHandler(RunnerFacingHandler):
    async def post(self) -> None:
        body = self.json_body()
        check_fields(body, {"runnerId", "stats", "activeCount", "generation"})
        runner_id = runner_id_of(body)
        stats = body.get("stats") or {}
        if not isinstance(stats, dict):
            raise BadRequest("stats must be an object (the runner's pool figures: running, warming, ...)")
        warming = _count(stats, "warming", 0)
        # activeCount: the runner's live sandboxes (Ash's runners send it too); else Ash's stats.running.
        active = _count(body, "activeCount", _count(stats, "running", 0))
        generation = _generation(body)
        store = self.ctx.store
        row = await self.ctx.offload.write(lambda: store.write_with(rq.heartbeat, runner_id, active, warming,
                                                                    store.now(), generation))
        if row is None:
            raise NotFound(f"Runner {runner_id} is not registered (it missed its heartbeats and was removed, "
                           "or registered again since): register again")
        self.send_json({"ok": True})


class RunnerDeregisterHandler(RunnerFacingHandler):
    async def post(self) -> None:
        body = self.json_body()
        check_fields(body, {"runnerId", "generation"})
        runner_id = runner_id_of(body)
        generation = _generation(body)
        reason = f"runner {runner_id} shut down"
        paused = await self.ctx.offload.write(self.ctx.store.write_with, rq.deregister, runner_id, reason,
                                              generation)
        log.info("runner %s deregistered; %d live session(s) paused%s", runner_id, len(paused),
                 f": {', '.join(paused)}" if paused else "")
        self.send_json({"ok": True, "pausedSessions": len(paused)})


class OperatorHandler(ApiHandler):
    """The internal secret, or an ``admin`` key of the operator's tenant (``default``)."""

    required_scope = scopes.ADMIN

    async def authenticate(self) -> None:
        secret = self.ctx.config.auth.internal_secret.reveal()
        scheme, _, given = (self.request.headers.get("Authorization") or "").partition(" ")
        if secret and scheme == "Bearer" and hmac.compare_digest(given.encode(), secret.encode()):
            self.principal = Principal(DEFAULT_TENANT, "internal", frozenset({scopes.ADMIN}))
            return
        await super().authenticate()
        if self.principal.tenant_id != DEFAULT_TENANT:
            raise Forbidden("The runner registry serves every tenant: only the operator sees or changes it "
                            "(ASH_INTERNAL_SECRET, or an admin key of the default tenant)")

    async def listing(self) -> tuple[list[RunnerRow], str, str]:
        """Every registered runner, the store's now, and the liveness cutoff."""
        store, timeout = self.ctx.store, self.ctx.config.cluster.liveness_timeout_s

        def read() -> tuple[list[RunnerRow], str, str]:
            now = store.now()
            return store.read_with(rq.list_all), now, rq.cutoff(now, timeout)

        return await self.ctx.offload.read(read)


class RunnersHandler(OperatorHandler):
    """GET /api/internal/runners."""

    async def get(self) -> None:
        rows, now, alive_after = await self.listing()
        self.send_json({"count": len(rows), "hasLocal": self.ctx.config.server.mode == "standalone",
                        "runners": [runner_json(r, now, alive_after) for r in rows]})


class RunnerDrainHandler(OperatorHandler):
    """POST /api/internal/runners/:id/drain: the runner takes no new sessions; every coordinator
    moves its live ones elsewhere at their next idle point (ashd/actors/drain.py)."""

    draining = True

    async def post(self, runner_id: str) -> None:
        store = self.ctx.store
        row = await self.ctx.offload.write(store.write_with, rq.set_draining, runner_id, self.draining)
        if row is None:
            raise NotFound(f"Runner {runner_id} is not registered")
        log.info("runner %s %s by the operator", runner_id,
                 "drains (no new sessions; live ones move)" if self.draining else "takes new sessions again")
        now = store.now()
        self.send_json({"runner": runner_json(row, now, rq.cutoff(now, self.ctx.config.cluster.liveness_timeout_s))})


class RunnerUndrainHandler(RunnerDrainHandler):
    """POST /api/internal/runners/:id/undrain: the runner takes new sessions again."""

    draining = False
