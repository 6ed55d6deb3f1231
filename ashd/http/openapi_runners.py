"""The OpenAPI paths and schemas of the runner registry (``runners.py``; docs/scale-out.md)."""

from __future__ import annotations

from typing import Any

from ashd.http.openapi import _json, _op, _param
from ashd.http.openapi_schemas import SCHEMAS, STRING, TIMESTAMP, Schema, ref
from ashd.http.runners import HOST, MAX_COUNT, RUNNER_ID

_RUNNER_ID: Schema = {"type": "string", "pattern": RUNNER_ID.pattern}
_COUNT: Schema = {"type": "integer", "minimum": 0, "maximum": MAX_COUNT}
_GENERATION: Schema = {"type": "integer", "minimum": 1, "maximum": 2**31 - 1,
                       "description": "the registration the runner holds (from register); a stale one gets 404"}
_OK: Schema = {"const": True}


def _closed(properties: dict[str, Schema], required: list[str]) -> Schema:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


SCHEMAS.update({
    "Runner": {"type": "object", "required": ["runnerId", "host", "port", "active", "max", "lastHeartbeat"],
               "properties": {
                   "runnerId": STRING, "host": STRING, "port": {"type": "integer"},
                   "active": {"type": "integer", "description": "live sandboxes at its last heartbeat"},
                   "max": {"type": "integer"}, "lastHeartbeat": TIMESTAMP,
                   "warming": {"type": "integer"}, "free": {"type": "integer"},
                   "generation": {"type": "integer"}, "draining": {"type": "boolean"},
                   "registeredAt": TIMESTAMP, "lastHeartbeatAgeS": {"type": "number"},
                   "alive": {"type": "boolean", "description": "heard from within cluster.liveness_timeout_s"}}},
    "RegisterRunner": _closed({
        "runnerId": _RUNNER_ID,
        "host": {"type": "string", "pattern": HOST.pattern, "description": "where coordinators reach the runner"},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "maxSandboxes": {"type": "integer", "minimum": 1, "maximum": MAX_COUNT, "default": 100}},
        ["runnerId", "host", "port"]),
    "RunnerHeartbeat": _closed({
        "runnerId": _RUNNER_ID,
        "stats": {"type": "object", "description": "the runner's pool figures (running, warming, ...)",
                  "properties": {"running": _COUNT, "warming": _COUNT}},
        "activeCount": _COUNT, "generation": _GENERATION}, ["runnerId"]),
    "DeregisterRunner": _closed({"runnerId": _RUNNER_ID, "generation": _GENERATION}, ["runnerId"]),
})

_RUNNER_AUTH = "Bearer ASH_INTERNAL_SECRET only (an API key gets 401)"
_OPERATOR = "the internal secret, or an admin key of the default tenant (others: 403)"


def runner_paths() -> dict[str, Any]:
    t = "runners"
    runner_id = _param("id", "path", _RUNNER_ID, "runner id")
    one = (200, _json({"type": "object", "required": ["runner"], "properties": {"runner": ref("Runner")}}))

    def runner_call(summary: str, body: str, answer: dict[str, Schema], errors: tuple[int, ...]) -> dict[str, Any]:
        ok = (200, _json({"type": "object", "required": list(answer), "properties": answer}))
        return {"post": _op(f"{summary}. {_RUNNER_AUTH}; 409 unless this ashd is a coordinator", t, ok,
                            (404, 409, 503, *errors), body=ref(body))}

    return {
        "/api/internal/runners": {"get": _op(
            f"List registered runners (Ash's shape; ashd adds warming, generation, draining, alive). {_OPERATOR}",
            t, (200, _json({"type": "object", "required": ["count", "hasLocal", "runners"], "properties": {
                "count": {"type": "integer"}, "hasLocal": {"type": "boolean"},
                "runners": {"type": "array", "items": ref("Runner")}}})), (503,))},
        "/api/internal/runners/register": runner_call(
            "A runner registers (again: a new generation, counts reset)", "RegisterRunner",
            {"ok": _OK, "runnerId": STRING, "generation": {"type": "integer"},
             "livenessTimeoutS": {"type": "number"}}, ()),
        "/api/internal/runners/heartbeat": runner_call(
            "A runner reports its figures; 404 when it is not registered (it must register again)",
            "RunnerHeartbeat", {"ok": _OK}, ()),
        "/api/internal/runners/deregister": runner_call(
            "A runner leaves (idempotent); its live sessions are paused at once", "DeregisterRunner",
            {"ok": _OK, "pausedSessions": {"type": "integer"}}, ()),
        "/api/internal/runners/{id}/drain": {"parameters": [runner_id], "post": _op(
            f"Drain a runner: it takes no new sessions, and its live ones move to other runners, each at "
            f"its next idle point. {_OPERATOR}", t, one, (404, 503))},
        "/api/internal/runners/{id}/undrain": {"parameters": [runner_id], "post": _op(
            f"Let a drained runner take new sessions again. {_OPERATOR}", t, one, (404, 503))},
    }
