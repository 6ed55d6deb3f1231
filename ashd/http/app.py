"""The route table (Ash's paths)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tornado.web

from ashd.http.agent_files import AgentFileHandler, AgentFilesHandler
from ashd.http.agents import AgentConfigHandler, AgentHandler, AgentsHandler
from ashd.http.analytics import AnalyticsHandler
from ashd.http.attachments import AttachmentHandler, SessionAttachmentsHandler
from ashd.http.base import NotFoundHandler
from ashd.http.context import AppContext
from ashd.http.credentials import CredentialHandler, CredentialsHandler
from ashd.http.eval_cases import EvalCaseExportHandler, EvalCaseHandler, EvalCaseImportHandler, EvalCasesHandler
from ashd.http.eval_runs import (
    EvalResultHandler,
    EvalRunCompareHandler,
    EvalRunHandler,
    EvalRunResultsHandler,
    EvalRunScoreHandler,
    EvalRunsHandler,
)
from ashd.http.faults import FaultsHandler
from ashd.http.health import HealthHandler, LiveHandler, ReadyHandler
from ashd.http.keys import ApiKeyHandler, ApiKeysHandler, InternalApiKeysHandler
from ashd.http.metrics import MetricsHandler, route_labels
from ashd.http.openapi import SWAGGER_UI_DIR, DocsHandler, OpenApiHandler
from ashd.http.ops import ExecHandler, LogsHandler
from ashd.http.queue import QueueHandler, QueueItemHandler, QueueStatsHandler
from ashd.http.runners import (
    RunnerDeregisterHandler,
    RunnerDrainHandler,
    RunnerHeartbeatHandler,
    RunnerRegisterHandler,
    RunnersHandler,
    RunnerUndrainHandler,
)
from ashd.http.session_files import SessionFileHandler, SessionFilesHandler, WorkspaceHandler
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
from ashd.http.versions import AgentVersionActivateHandler, AgentVersionHandler, AgentVersionsHandler

_SEG = r"([^/]+)"


def make_app(ctx: AppContext, isolation: Callable[[], dict[str, Any]] | None = None,
             fault_injection: bool = False) -> tornado.web.Application:
    """``isolation``: the sandbox isolation report (and the zygote's state) shown at /health, no secrets.
    ``fault_injection`` (``debug.fault_injection``, TEST ONLY): add POST /api/internal/faults."""
    args = {"ctx": ctx}
    routes: list[tuple[str, type[tornado.web.RequestHandler]]] = [
        (r"/metrics", MetricsHandler),
        (r"/api/usage", UsageHandler),
        (r"/api/usage/stats", UsageStatsHandler),
        (r"/api/analytics", AnalyticsHandler),
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
        # -- files, workspace, attachments --
        (rf"/api/sessions/{_SEG}/files", SessionFilesHandler),
        (rf"/api/sessions/{_SEG}/files/(.*)", SessionFileHandler),
        (rf"/api/sessions/{_SEG}/workspace", WorkspaceHandler),
        (rf"/api/sessions/{_SEG}/attachments", SessionAttachmentsHandler),
        (rf"/api/attachments/{_SEG}", AttachmentHandler),
        (rf"/api/agents/{_SEG}/files", AgentFilesHandler),
        (rf"/api/agents/{_SEG}/files/(.*)", AgentFileHandler),
        # -- exec, logs, queue --
        (rf"/api/sessions/{_SEG}/exec", ExecHandler),
        (rf"/api/sessions/{_SEG}/logs", LogsHandler),
        (r"/api/queue", QueueHandler),
        (r"/api/queue/stats", QueueStatsHandler),
        (rf"/api/queue/{_SEG}", QueueItemHandler),
        # -- api keys, internal --
        (r"/api/api-keys", ApiKeysHandler),
        (rf"/api/api-keys/{_SEG}", ApiKeyHandler),
        (r"/api/internal/api-keys", InternalApiKeysHandler),
        # -- the runner registry (coordinators; docs/scale-out.md) --
        (r"/api/internal/runners", RunnersHandler),
        (r"/api/internal/runners/register", RunnerRegisterHandler),
        (r"/api/internal/runners/heartbeat", RunnerHeartbeatHandler),
        (r"/api/internal/runners/deregister", RunnerDeregisterHandler),
        (rf"/api/internal/runners/{_SEG}/drain", RunnerDrainHandler),
        (rf"/api/internal/runners/{_SEG}/undrain", RunnerUndrainHandler),
        # -- credentials, agent versions --
        (r"/api/credentials", CredentialsHandler),
        (rf"/api/credentials/{_SEG}", CredentialHandler),
        (rf"/api/agents/{_SEG}/versions", AgentVersionsHandler),
        (rf"/api/agents/{_SEG}/versions/{_SEG}", AgentVersionHandler),
        (rf"/api/agents/{_SEG}/versions/{_SEG}/activate", AgentVersionActivateHandler),
        # -- evals (the fixed names before the {id} routes that would match them) --
        (rf"/api/agents/{_SEG}/eval-cases", EvalCasesHandler),
        (rf"/api/agents/{_SEG}/eval-cases/import", EvalCaseImportHandler),
        (rf"/api/agents/{_SEG}/eval-cases/export", EvalCaseExportHandler),
        (rf"/api/agents/{_SEG}/eval-cases/{_SEG}", EvalCaseHandler),
        (rf"/api/agents/{_SEG}/eval-runs", EvalRunsHandler),
        (rf"/api/agents/{_SEG}/eval-runs/compare", EvalRunCompareHandler),
        (rf"/api/agents/{_SEG}/eval-runs/{_SEG}", EvalRunHandler),
        (rf"/api/agents/{_SEG}/eval-runs/{_SEG}/results", EvalRunResultsHandler),
        (rf"/api/agents/{_SEG}/eval-runs/{_SEG}/score", EvalRunScoreHandler),
        (rf"/api/agents/{_SEG}/eval-results/{_SEG}", EvalResultHandler),
    ]
    if fault_injection:  # TEST ONLY, off by default: the route does not exist otherwise
        routes.append((r"/api/internal/faults", FaultsHandler))
    table: list[Any] = [
        (r"/health", HealthHandler, {**args, "isolation": isolation}),
        (r"/health/live", LiveHandler, args),
        (r"/health/ready", ReadyHandler, args),
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
