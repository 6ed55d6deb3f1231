"""The OpenAPI component schemas: Ash's JSON shapes as ashd renders them (``views.py``).

Request schemas mirror the checks in ``ashd/options.py``, ``ashd/deploy.py`` and the
handlers, so a body the spec accepts is one the server may still refuse only for reasons a
schema cannot express (a reserved env name, a folder missing on the server, ...), with 400.
"""

from __future__ import annotations

from typing import Any

from ashd.config import PERMISSION_MODES
from ashd.http.sessions import TIMELINE_TYPES
from ashd.options import (
    AGENT_NAME,
    BLOCK_TYPES,
    MAX_BLOCKS,
    MAX_PROMPT_CHARS,
    MAX_SYSTEM_PROMPT_CHARS,
    UNSUPPORTED_MESSAGE_FIELDS,
    UNSUPPORTED_SESSION_FIELDS,
)
from ashd.states import SessionStatus

Schema = dict[str, Any]

STRING: Schema = {"type": "string"}
NULLABLE_STRING: Schema = {"type": ["string", "null"]}
TIMESTAMP: Schema = {"type": "string", "description": "ISO-8601 UTC with milliseconds"}
UUID: Schema = {"type": "string", "format": "uuid"}
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
SESSION_STATUSES = [s.value for s in SessionStatus]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(properties: dict[str, Schema], required: list[str] | None = None, closed: bool = False) -> Schema:
    out: Schema = {"type": "object", "properties": properties,
                   "required": list(properties) if required is None else required}
    if closed:
        out["additionalProperties"] = False
    return out


def _refused(fields: tuple[str, ...], where: str) -> dict[str, Schema]:
    """Ash fields this ashd refuses with 400 (rather than ignoring them)."""
    note = f"Accepted by Ash, not supported by this ashd version for {where}: refused with 400."
    return {name: {"description": note, "not": {}} for name in fields}


_ENV: Schema = {
    "type": "object",
    "description": "Environment variables (string values). Names reserved by ashd (PATH, HOME, "
                   "ANTHROPIC_*, CLAUDE_*, ASH_*, LD_*, PYTHON*, OTEL_*, ...) are refused with 400.",
    "propertyNames": {"pattern": ENV_NAME},
    "additionalProperties": {"type": "string", "maxLength": 32 * 1024},
}
_TOOLS: Schema = {"type": "array", "maxItems": 200, "items": {"type": "string", "minLength": 1}}
_PERMISSION_MODE: Schema = {"type": "string", "enum": [*PERMISSION_MODES, "permissionsByAgent"],
                            "description": "permissionsByAgent (Ash's name) means default"}
_LIMITS: Schema = {
    "type": "object",
    "description": "Sandbox limits for this session; may only lower the agent's.",
    "additionalProperties": False,
    "properties": {
        "memoryMb": {"type": "integer", "minimum": 1},
        "cpus": {"type": "number", "minimum": 0.01},
        "pids": {"type": "integer", "minimum": 1},
        "diskMb": {"type": "integer", "minimum": 1},
        "tmpMb": {"type": "integer", "minimum": 1},
    },
}
_SESSION_FIELDS: dict[str, Schema] = {
    "model": {"type": "string", "minLength": 1, "maxLength": 100},
    "systemPrompt": {"type": "string", "minLength": 1, "maxLength": MAX_SYSTEM_PROMPT_CHARS},
    "permissionMode": _PERMISSION_MODE,
    "allowedTools": _TOOLS,
    "disallowedTools": _TOOLS,
}

SCHEMAS: dict[str, Schema] = {
    "Error": _obj({"error": STRING, "statusCode": {"type": "integer", "minimum": 400, "maximum": 599}}),
    "Agent": _obj({
        "id": STRING, "name": STRING, "tenantId": STRING, "version": {"type": "integer"},
        "path": STRING,
        "env": {"type": "object", "additionalProperties": {"const": "***"},
                "description": "values are redacted"},
        "createdAt": TIMESTAMP, "updatedAt": TIMESTAMP,
    }),
    "AgentConfig": {
        "type": "object",
        "description": "Free-form agent config (shallow-merged on PATCH). Known key: preWarmCount.",
        "properties": {"preWarmCount": {"type": "integer", "minimum": 0, "maximum": 10}},
    },
    "Session": _obj({
        "id": UUID, "tenantId": STRING, "agentName": STRING, "sandboxId": STRING,
        "status": {"type": "string", "enum": SESSION_STATUSES},
        "runnerId": NULLABLE_STRING, "parentSessionId": NULLABLE_STRING,
        "createdAt": TIMESTAMP, "lastActiveAt": TIMESTAMP,
        "statusReason": NULLABLE_STRING, "model": NULLABLE_STRING,
    }),
    "Message": _obj({
        "id": STRING, "sessionId": STRING, "tenantId": STRING,
        "role": STRING, "content": {"type": "string", "description": "a JSON document"},
        "sequence": {"type": "integer"}, "createdAt": TIMESTAMP,
    }),
    "Event": _obj({
        "id": STRING, "sessionId": STRING, "tenantId": STRING,
        "type": {"type": "string", "enum": list(TIMELINE_TYPES)},
        "data": {"type": "string", "description": "a JSON document"},
        "sequence": {"type": "integer"}, "createdAt": TIMESTAMP,
    }),
    "UsageEvent": _obj({
        "id": STRING, "tenantId": STRING, "sessionId": STRING, "agentName": STRING,
        "eventType": {"type": "string", "enum": ["input_tokens", "output_tokens", "cache_creation_tokens",
                                                 "cache_read_tokens", "tool_call", "message", "cost_usd"]},
        "value": {"type": "number"}, "createdAt": TIMESTAMP,
    }),
    "UsageStats": _obj({name: {"type": "number"} for name in (
        "totalInputTokens", "totalOutputTokens", "totalCacheCreationTokens", "totalCacheReadTokens",
        "totalToolCalls", "totalMessages", "totalCostUsd", "totalComputeSeconds")}),
    "PoolStats": _obj({name: {"type": "integer", "minimum": 0} for name in (
        "total", "cold", "warming", "warm", "waiting", "running", "maxCapacity",
        "resumeWarmHits", "resumeColdHits", "preWarmHits")}),
    "Health": _obj({
        "status": {"const": "ok"}, "version": STRING, "coordinatorId": STRING,
        "activeSessions": {"type": "integer"}, "activeSandboxes": {"type": "integer"},
        "remoteRunners": {"type": "integer"}, "uptime": {"type": "integer", "description": "seconds"},
        "pool": ref("PoolStats"),
        "isolation": {"type": ["object", "null"], "description": "active sandbox layers (ashd's addition)"},
    }),
    "DeployAgent": {
        **_obj({
            "name": {"type": "string", "pattern": AGENT_NAME.pattern},
            "path": {"type": "string", "minLength": 1,
                     "description": "a folder on the server (absolute or relative to the data dir) "
                                    "with a CLAUDE.md; 400 otherwise"},
            "files": {"type": "array", "items": _obj({
                "path": {"type": "string", "description": "relative, without '..'"},
                "content": {"type": "string", "contentEncoding": "base64"},
            })},
            "systemPrompt": STRING,
            "env": _ENV,
        }, required=["name"]),
        "description": "Give either path or files (an upload), not both (400).",
        "not": {"required": ["path", "files"]},
    },
    "CreateSession": _obj({
        "agent": {"type": "string", "pattern": AGENT_NAME.pattern},
        **_SESSION_FIELDS,
        "extraEnv": _ENV,
        "limits": _LIMITS,
        "maxBudgetUsd": {"type": "number", "exclusiveMinimum": 0},
        **_refused(UNSUPPORTED_SESSION_FIELDS, "sessions"),
    }, required=["agent"]),
    "SessionConfig": _obj({**_SESSION_FIELDS, **_refused(UNSUPPORTED_SESSION_FIELDS, "sessions")},
                          required=[], closed=True),
    "SendMessage": _obj({
        "content": {"oneOf": [
            {"type": "string", "minLength": 1, "maxLength": MAX_PROMPT_CHARS, "pattern": r"\S",
             "description": "the prompt"},
            {"type": "array", "minItems": 1, "maxItems": MAX_BLOCKS, "items": {
                "type": "object", "required": ["type"],
                "properties": {"type": {"enum": list(BLOCK_TYPES)}},
            }},
        ]},
        "includePartialMessages": {"type": "boolean"},
        "model": {"type": "string", "minLength": 1, "maxLength": 100},
        **_refused(UNSUPPORTED_MESSAGE_FIELDS, "messages"),
    }, required=["content"]),
}


def wrapped(key: str, schema: Schema) -> Schema:
    """Ash's envelope: ``{"session": {...}}`` and the like."""
    return _obj({key: schema})
