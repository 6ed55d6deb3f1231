"""The OpenAPI 3.1 contract of every route in ``app.py``, served at /openapi.json, and
Swagger UI at /docs (assets served from the ``swagger_ui_bundle`` package, never a CDN).

``tests/http/test_openapi.py`` fails when a route of the table has no path here (or the
reverse); ``tests/http/test_fuzz.py`` fuzzes a running ashd against this document.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import swagger_ui_bundle

from ashd import __version__
from ashd.http.base import ApiHandler
from ashd.http.openapi_schemas import SCHEMAS, UUID, Schema, ref, wrapped
from ashd.http.sessions import MAX_SEQ, TIMELINE_TYPES
from ashd.options import AGENT_NAME
from ashd.states import SessionStatus

SWAGGER_UI_DIR = str(swagger_ui_bundle.swagger_ui_path)
PUBLIC = "public"

_ERRORS = {
    400: "The request is invalid (the message says what to fix)",
    401: "Missing, malformed or unknown API key",
    403: "The API key lacks the scope this operation needs (read < write < admin)",
    404: "No such object for this tenant",
    409: "The session is busy or in a state that forbids this now",
    410: "The session has ended",
    413: "The request body is too large",
    422: "The agent's folder is missing on this server",
    429: "Rate limit exceeded for this API key (or client address); see Retry-After",
    500: "Unexpected server error (logged)",
    502: "The sandbox or its agent process failed",
    503: "Temporarily unavailable (capacity, database); see Retry-After",
    507: "The data disk cannot hold this (a workspace of this disk quota, a bundle, an attachment); see Retry-After",
}
_SSE = {"text/event-stream": {"schema": {
    "type": "string",
    "description": "Frames `id: <n>\\nevent: <name>\\ndata: <one line of JSON>\\n\\n`; events "
                   "session_start, text_delta, thinking_delta, tool_use, tool_result, turn_complete, "
                   "message, error, done (always last). Comment lines are heartbeats.",
}}}


def _json(schema: Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _param(name: str, where: str, schema: Schema, description: str = "") -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path", "schema": schema,
            **({"description": description} if description else {})}


NAME = _param("name", "path", {"type": "string", "pattern": AGENT_NAME.pattern}, "agent name")
SESSION_ID = _param("id", "path", UUID, "session id (not a UUID: 400)")


def _limit(default: int) -> dict[str, Any]:
    return _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000, "default": default})


AFTER = _param("after", "query", {"type": "integer", "minimum": 0, "maximum": MAX_SEQ},
               "only rows with a larger sequence")
USAGE_FILTERS = [
    _param("sessionId", "query", {"type": "string"}),
    _param("agentName", "query", {"type": "string"}),
    _param("after", "query", {"type": "string"}, "ISO-8601 timestamp (exclusive)"),
    _param("before", "query", {"type": "string"}, "ISO-8601 timestamp (exclusive)"),
    _limit(100),
]
_INSTANT = {"type": "string", "format": "date-time"}
WINDOW = [_param("after", "query", _INSTANT, "ISO-8601 timestamp with a time zone (exclusive)"),
          _param("before", "query", _INSTANT, "ISO-8601 timestamp with a time zone (exclusive)")]


def _op(summary: str, tag: str, ok: tuple[int, dict[str, Any]], errors: tuple[int, ...] = (),
        params: list[dict[str, Any]] | None = None, body: Schema | None = None,
        auth: bool = True) -> dict[str, Any]:
    status, content = ok
    codes = sorted({*errors, *((401, 403, 429) if auth else ()), *((400,) if body else ()), 500})
    responses: dict[str, Any] = {str(status): {"description": "OK", "content": content}}
    responses.update({str(c): {"$ref": f"#/components/responses/E{c}"} for c in codes})
    out: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": responses}
    if params:
        out["parameters"] = params
    if body is not None:
        out["requestBody"] = {"required": False, "content": _json(body)}
    if not auth:
        out["security"] = []
    return out


def _envelope(key: str, schema: Schema, status: int = 200) -> tuple[int, dict[str, Any]]:
    return status, _json(wrapped(key, schema))


def _list(key: str, item: str) -> tuple[int, dict[str, Any]]:
    return 200, _json(wrapped(key, {"type": "array", "items": ref(item)}))


SESSION = _envelope("session", ref("Session"))
LIFECYCLE = (404, 409, 410, 422, 502, 503, 507)


def _paths() -> dict[str, Any]:
    from ashd.http.openapi_evals import eval_paths  # they build on this module's helpers
    from ashd.http.openapi_files import files_paths
    from ashd.http.openapi_runners import runner_paths

    return {**_core_paths(), **files_paths(), **_ops_paths(), **_keys_paths(), **_credentials_paths(),
            **eval_paths(), **runner_paths()}


def _ops_paths() -> dict[str, Any]:
    """Exec, logs, the prompt queue."""
    s, q = "sessions", "queue"
    item_id = _param("id", "path", UUID, "queue item id (not a UUID: 400)")
    return {
        "/api/sessions/{id}/exec": {"parameters": [SESSION_ID], "post": _op(
            "Run a shell command in the session's sandbox (409 unless active with a live sandbox)", s,
            (200, _json(ref("ExecResult"))), (400, 404, 409, 503), body=ref("ExecRequest"))},
        "/api/sessions/{id}/logs": {"parameters": [SESSION_ID], "get": _op(
            "Recent output of the session's agent process (in memory; [] when unknown)", s,
            (200, _json(_obj_logs())), (400, 404, 503),
            [_param("after", "query", {"type": "integer", "minimum": -1, "maximum": MAX_SEQ},
                    "only lines with a larger index")])},
        "/api/queue": {
            "post": _op("Queue a prompt for an agent (or one of its sessions)", q,
                        _envelope("item", ref("QueueItem"), 201), (404, 503), body=ref("Enqueue")),
            "get": _op("List queue items, highest priority first", q, _list("items", "QueueItem"), (400, 503), [
                _param("status", "query", {"type": "string", "enum": ["pending", "processing", "completed",
                                                                      "failed", "cancelled"]}),
                _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}),
            ]),
        },
        "/api/queue/stats": {"get": _op("Queue item counts by status", q, _envelope("stats", ref("QueueStats")),
                                        (503,))},
        "/api/queue/{id}": {
            "parameters": [item_id],
            "get": _op("Get a queue item", q, _envelope("item", ref("QueueItem")), (400, 404, 503)),
            "delete": _op("Cancel a pending item (409 otherwise)", q, _envelope("item", ref("QueueItem")),
                          (400, 404, 409, 503)),
        },
    }


def _obj_logs() -> Schema:
    return {"type": "object", "required": ["logs", "source"], "properties": {
        "logs": {"type": "array", "items": ref("LogLine")}, "source": {"const": "sandbox"}}}


def _keys_paths() -> dict[str, Any]:
    """API keys and the internal (secret-guarded) endpoints."""
    k = "api-keys"
    key_id = _param("id", "path", {"type": "string"}, "key id (the ASH_API_KEY entry is \"env\")")
    return {
        "/api/api-keys": {
            "get": _op("List the tenant's API keys (never a key or its hash; admin scope)", k,
                       _list("keys", "ApiKey"), (503,)),
            "post": _op("Create an API key for the caller's tenant; the key is shown only here (admin scope)",
                        k, (201, _json(ref("NewApiKey"))), (503,), body=ref("CreateApiKey")),
        },
        "/api/api-keys/{id}": {"parameters": [key_id], "delete": _op(
            "Revoke a key now (admin scope). 409 if it is the key making the request and the tenant's "
            "last admin key", k, (204, {}), (400, 404, 409, 503))},
        "/api/internal/api-keys": {"post": _op(
            "Operator: mint a key for any tenant. Bearer ASH_INTERNAL_SECRET (not an API key); "
            "404 while ASH_INTERNAL_SECRET is unset", "internal",
            (201, _json(ref("NewApiKey"))), (404, 503), body=ref("CreateTenantApiKey"))},
    }


def _credentials_paths() -> dict[str, Any]:
    """Credentials and agent versions."""
    c, v = "credentials", "agent-versions"
    cred_id = _param("id", "path", UUID, "credential id")
    number = _param("n", "path", {"type": "string", "pattern": r"^([0-9]+|[0-9a-fA-F-]{36})$"},
                    "version number or version id (UUID); anything else: 400")
    version = _envelope("version", ref("AgentVersion"))
    return {
        "/api/credentials": {
            "post": _op("Store an upstream model key, AES-256-GCM sealed (admin scope); never returned. "
                        "409 while ASH_CREDENTIAL_KEY is unset", c, _envelope("credential", ref("Credential"), 201),
                        (409, 413, 503), body=ref("CreateCredential")),
            "get": _op("List the tenant's credentials, without secrets (admin scope)", c,
                       _list("credentials", "Credential"), (503,)),
        },
        "/api/credentials/{id}": {"parameters": [cred_id], "delete": _op(
            "Delete a credential (admin scope); sessions using it cannot start a sandbox again", c,
            (204, {}), (404, 503))},
        "/api/agents/{name}/versions": {
            "parameters": [NAME],
            "get": _op("List the agent's versions by number", v, _list("versions", "AgentVersion"), (404, 503)),
            "post": _op("Create the next version (optionally cloned from another)", v,
                        _envelope("version", ref("AgentVersion"), 201), (404, 409, 503),
                        body=ref("CreateAgentVersion")),
        },
        "/api/agents/{name}/versions/{n}": {
            "parameters": [NAME, number],
            "get": _op("Get a version", v, version, (400, 404, 503)),
            "patch": _op("Change a version's name, prompt, notes or knowledge files", v, version,
                         (404, 503), body=ref("PatchAgentVersion")),
            "delete": _op("Delete a version (409 for the active one)", v, (204, {}), (400, 404, 409, 503)),
        },
        "/api/agents/{name}/versions/{n}/activate": {"parameters": [NAME, number], "post": _op(
            "Make this the active version: its systemPrompt replaces CLAUDE.md for new sessions", v,
            (200, _json({"type": "object", "required": ["activated", "versionNumber"], "properties": {
                "activated": {"const": True}, "versionNumber": {"type": "integer"}}})), (400, 404, 503))},
    }


def _core_paths() -> dict[str, Any]:
    s, a = "sessions", "agents"
    return {
        "/health": {"get": _op("Liveness (public); pool figures and the tenant's active sessions with a key "
                               "(the pool and all tenants' active sessions without one, if the operator "
                               "opted in: server.public_health_figures)",
                               "health", (200, _json(ref("Health"))),
                               (503,), auth=False)},
        "/health/live": {"get": _op("Liveness probe (public): 200 while the process serves HTTP", "health",
                                    (200, _json(ref("Probe"))), auth=False)},
        "/health/ready": {"get": _op("Readiness probe (public): 200 when sessions can be served, else 503 "
                                     "with the reason", "health", (200, _json(ref("Probe"))), (503,),
                                     auth=False)},
        "/metrics": {"get": _op("Prometheus metrics (text exposition format)", "health",
                                (200, {"text/plain": {"schema": {"type": "string"}}}), (503,))},
        "/openapi.json": {"get": _op("This document (public)", "docs",
                                     (200, _json({"type": "object"})), auth=False)},
        "/docs": {"get": _op("Swagger UI (public)", "docs",
                             (200, {"text/html": {"schema": {"type": "string"}}}), auth=False)},
        "/api/usage": {"get": _op("Usage events metered by the model proxy", "usage",
                                  _list("events", "UsageEvent"), (400, 503), USAGE_FILTERS)},
        "/api/usage/stats": {"get": _op("Usage totals", "usage", _envelope("stats", ref("UsageStats")),
                                        (400, 503), USAGE_FILTERS)},
        "/api/analytics": {"get": _op("The tenant's figures over a window: agents, sessions, messages, usage, "
                                      "turn latency, eval runs", "usage", (200, _json(ref("Analytics"))),
                                      (400, 503), WINDOW)},
        "/api/agents": {
            "post": _op("Deploy or redeploy an agent (server folder or upload)", a,
                        _envelope("agent", ref("Agent"), 201), (409, 413, 503, 507), body=ref("DeployAgent")),
            "get": _op("List the tenant's agents", a, _list("agents", "Agent"), (503,)),
        },
        "/api/agents/{name}": {
            "parameters": [NAME],
            "get": _op("Get an agent", a, _envelope("agent", ref("Agent")), (404, 503)),
            "patch": _op("Replace env and/or shallow-merge config (no version bump)", a,
                         _envelope("agent", ref("Agent")), (404, 503), body=ref("PatchAgent")),
            "delete": _op("End the agent's live sessions, delete it and its sessions", a,
                          (200, _json(wrapped("ok", {"const": True}))), (404, 409, 503)),
        },
        "/api/agents/{name}/config": {
            "parameters": [NAME],
            "get": _op("Get the agent's config", a, _envelope("config", ref("AgentConfig")), (404, 503)),
            "patch": _op("Shallow-merge into the agent's config", a, _envelope("config", ref("AgentConfig")),
                         (404, 503), body=ref("AgentConfig")),
        },
        "/api/sessions": {
            "post": _op("Create a session (starts its sandbox and agent process)", s, (201, SESSION[1]),
                        LIFECYCLE, body=ref("CreateSession")),
            "get": _op("List sessions, newest first", s, _list("sessions", "Session"), (400, 503), [
                _param("agent", "query", {"type": "string"}),
                _param("status", "query", {"type": "string", "enum": [st.value for st in SessionStatus]}),
            ]),
        },
        "/api/sessions/{id}": {
            "parameters": [SESSION_ID],
            "get": _op("Get a session", s, SESSION, (400, 404, 503)),
            "delete": _op("End the session (final, idempotent)", s, SESSION, (400, *LIFECYCLE)),
        },
        "/api/sessions/{id}/stop": _lifecycle("Stop: destroy the sandbox, keep the workspace"),
        "/api/sessions/{id}/pause": _lifecycle("Pause: save the workspace, keep the sandbox"),
        "/api/sessions/{id}/resume": _lifecycle("Resume (warm if the agent process lives, cold otherwise)"),
        "/api/sessions/{id}/fork": _lifecycle("Fork into a new paused session", 201),
        "/api/sessions/{id}/config": {"parameters": [SESSION_ID], "patch": _op(
            "Patch-merge model, tools, prompt, permission mode for later turns", s, SESSION,
            LIFECYCLE, body=ref("SessionConfig"))},
        "/api/sessions/{id}/messages": {
            "parameters": [SESSION_ID],
            "post": _op("Send a message; the reply streams as SSE", s, (200, _SSE),
                        (*LIFECYCLE, 413), body=ref("SendMessage")),
            "get": _op("Stored messages", s, _list("messages", "Message"), (400, 404, 503),
                       [_limit(100), AFTER]),
        },
        "/api/sessions/{id}/events": {"parameters": [SESSION_ID], "get": _op(
            "Timeline events", s, _list("events", "Event"), (400, 404, 503),
            [_limit(200), AFTER, _param("type", "query", {"type": "string", "enum": list(TIMELINE_TYPES)})])},
        "/api/sessions/{id}/stream": {"parameters": [SESSION_ID], "get": _op(
            "Replay stored stream events after Last-Event-ID (or ?after=), then follow the running turn "
            "(?follow=true: every later turn too)",
            s, (200, _SSE), (400, 404, 503), [
                AFTER, _param("Last-Event-ID", "header", {"type": "string", "pattern": r"^\s*[0-9]+\s*$"},
                              "resume after this event id (wins over ?after=)"),
                _param("follow", "query", {"type": "string", "enum": ["true", "false", "1", "0"]},
                       "ashd's addition: keep the stream open across turns until the session ends")])},
        "/api/sessions/{id}/interrupt": {"parameters": [SESSION_ID], "post": _op(
            "Stop the running turn; the session stays usable", s,
            (200, _json({"type": "object", "required": ["interrupted", "sessionId"], "properties": {
                "interrupted": {"const": True}, "sessionId": UUID}})), (400, 404, 409, 503))},
    }


def _lifecycle(summary: str, status: int = 200) -> dict[str, Any]:
    return {"parameters": [SESSION_ID],
            "post": _op(summary, "sessions", (status, SESSION[1]), (400, *LIFECYCLE))}


@functools.cache
def _document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "ashd", "version": __version__,
                 "description": "Ash-compatible API for Claude agents. Every error is "
                                "`{error, statusCode}`; 503 responses carry Retry-After."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "an ashd API key (ash_...)"}},
            "schemas": SCHEMAS,
            "responses": {f"E{code}": {"description": text, "content": _json(ref("Error"))}
                          for code, text in _ERRORS.items()},
        },
    }


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document (a fresh copy: callers may change it)."""
    return copy.deepcopy(_document())


_DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ashd API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui"});</script>
</body></html>
"""


class OpenApiHandler(ApiHandler):
    """GET /openapi.json (public)."""

    async def get(self) -> None:
        self.send_json(_document())


class DocsHandler(ApiHandler):
    """GET /docs (public): Swagger UI reading /openapi.json."""

    async def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(_DOCS_PAGE)

