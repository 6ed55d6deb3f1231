"""The route table (Ash's paths)."""

from __future__ import annotations

from typing import Any

import tornado.web

from ashd.http.agents import AgentConfigHandler, AgentHandler, AgentsHandler
from ashd.http.base import NotFoundHandler
from ashd.http.context import AppContext
from ashd.http.health import HealthHandler
from ashd.http.metrics import MetricsHandler, route_labels
from ashd.http.openapi import SWAGGER_UI_DIR, DocsHandler, OpenApiHandler
from ashd.http.sessions import (
    EventsHandler,
    InterruptHandler,
    MessagesHandler,
    SessionConfigHandler,
    SessionForkHandler,
    SessionHandler,
    SessionPauseHandler,
    SessionResumeHandler,
    SessionsHandler,
    SessionStopHandler,
    StreamHandler,
)
from ashd.http.usage import UsageHandler, UsageStatsHandler

_SEG = r"([^/]+)"


def make_app(ctx: AppContext, isolation: dict[str, Any] | None = None) -> tornado.web.Application:
    """``isolation``: the sandbox isolation report shown at /health (no secrets)."""
    args = {"ctx": ctx}
    routes: list[tuple[str, type[tornado.web.RequestHandler]]] = [
        (r"/metrics", MetricsHandler),
        (r"/api/usage", UsageHandler),
        (r"/api/usage/stats", UsageStatsHandler),
        (r"/api/agents", AgentsHandler),
        (rf"/api/agents/{_SEG}", AgentHandler),
        (rf"/api/agents/{_SEG}/config", AgentConfigHandler),
        (r"/api/sessions", SessionsHandler),
        (rf"/api/sessions/{_SEG}", SessionHandler),
        (rf"/api/sessions/{_SEG}/stop", SessionStopHandler),
        (rf"/api/sessions/{_SEG}/pause", SessionPauseHandler),
        (rf"/api/sessions/{_SEG}/resume", SessionResumeHandler),
        (rf"/api/sessions/{_SEG}/fork", SessionForkHandler),
        (rf"/api/sessions/{_SEG}/config", SessionConfigHandler),
        (rf"/api/sessions/{_SEG}/messages", MessagesHandler),
        (rf"/api/sessions/{_SEG}/events", EventsHandler),
        (rf"/api/sessions/{_SEG}/stream", StreamHandler),
        (rf"/api/sessions/{_SEG}/interrupt", InterruptHandler),
    ]
    table: list[Any] = [
        (r"/health", HealthHandler, {**args, "isolation": isolation}),
        (r"/openapi.json", OpenApiHandler, args),
        (r"/docs", DocsHandler, args),
        # Swagger UI's own files, from the installed package (no CDN); not part of the API.
        (r"/docs/static/(.*)", tornado.web.StaticFileHandler, {"path": SWAGGER_UI_DIR}),
    ]
    app = tornado.web.Application(
        table + [(pattern, handler, args) for pattern, handler in routes],
        default_handler_class=NotFoundHandler,
        default_handler_args=args,
        compress_response=False,
    )
    app.settings["route_labels"] = route_labels(app)
    return app
