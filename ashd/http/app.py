"""The route table (Ash's paths)."""

from __future__ import annotations

import tornado.web

from ashd.http.agents import AgentHandler, AgentsHandler
from ashd.http.base import NotFoundHandler
from ashd.http.context import AppContext
from ashd.http.health import HealthHandler
from ashd.http.sessions import (
    EventsHandler,
    MessagesHandler,
    SessionHandler,
    SessionsHandler,
    SessionStopHandler,
)

_SEG = r"([^/]+)"


def make_app(ctx: AppContext) -> tornado.web.Application:
    args = {"ctx": ctx}
    routes = [
        (r"/health", HealthHandler),
        (r"/api/agents", AgentsHandler),
        (rf"/api/agents/{_SEG}", AgentHandler),
        (r"/api/sessions", SessionsHandler),
        (rf"/api/sessions/{_SEG}", SessionHandler),
        (rf"/api/sessions/{_SEG}/stop", SessionStopHandler),
        (rf"/api/sessions/{_SEG}/messages", MessagesHandler),
        (rf"/api/sessions/{_SEG}/events", EventsHandler),
    ]
    return tornado.web.Application(
        [(pattern, handler, args) for pattern, handler in routes],
        default_handler_class=NotFoundHandler,
        default_handler_args=args,
        compress_response=False,
    )
