"""The runner's own HTTP server on ``cluster.runner_host:cluster.runner_port`` (runner mode).

A runner serves no public API. Its routes (:func:`runner_routes`):

- ``GET /runner/health``: Ash's readiness probe, public, no secrets:
  ``{runnerId, status, capacity: {max, active, available}, pool, uptime}`` plus ashd's
  ``registration`` (registered, generation, seconds since the last heartbeat taken).

The coordinators' persistent link to the runner mounts here too (``/runner/link``,
authenticated by the internal secret); add its route to :func:`runner_routes`.
Every other path: 404 in Ash's error body.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import tornado.web
import ujson

from ashd import __version__
from ashd.runner.membership import Figures, Membership


@dataclass
class RunnerContext:
    """What the runner's handlers use (loop thread only)."""

    membership: Membership
    figures: Callable[[], Awaitable[Figures]]  # the local pool's load now
    started_at: float = field(default_factory=time.monotonic)


class RunnerHandler(tornado.web.RequestHandler):
    def initialize(self, ctx: RunnerContext) -> None:
        self.ctx = ctx

    def send_json(self, value: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(ujson.dumps(value))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.send_json({"error": self._reason, "statusCode": status_code}, status_code)


class RunnerHealthHandler(RunnerHandler):
    """GET /runner/health."""

    async def get(self) -> None:
        identity = self.ctx.membership.identity
        figures = await self.ctx.figures()
        self.send_json({
            "runnerId": identity.runner_id, "status": "ok", "version": __version__,
            "capacity": {"max": identity.max_sandboxes, "active": figures.active,
                         "available": max(0, identity.max_sandboxes - figures.active - figures.warming)},
            "pool": figures.stats, "uptime": int(time.monotonic() - self.ctx.started_at),
            "registration": self.ctx.membership.status(),
        })


class RunnerNotFoundHandler(RunnerHandler):
    async def prepare(self) -> None:
        self.send_json({"error": f"Route {self.request.method} {self.request.path} not found", "statusCode": 404},
                       404)


def runner_routes() -> list[tuple[str, type[tornado.web.RequestHandler]]]:
    """The runner's route table (the coordinators' link is added here)."""
    return [
        (r"/runner/health", RunnerHealthHandler),
    ]


def make_runner_app(ctx: RunnerContext, own_args: list[tuple[str, type[tornado.web.RequestHandler], dict[str, Any]]]
                    | None = None) -> tornado.web.Application:
    """``own_args``: routes with their own handler arguments (the coordinators' link)."""
    args = {"ctx": ctx}
    routes: list[Any] = [(pattern, handler, args) for pattern, handler in runner_routes()]
    return tornado.web.Application([*routes, *(own_args or [])],
                                   default_handler_class=RunnerNotFoundHandler, default_handler_args=args,
                                   compress_response=False)
