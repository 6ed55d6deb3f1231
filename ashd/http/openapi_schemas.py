"""The OpenAPI component schemas: Ash's JSON shapes as ashd renders them (``views.py``).

Request schemas mirror the checks in ``ashd/options.py``, ``ashd/deploy.py`` and the
handlers, so a body the spec accepts is one the server may still refuse only for reasons a
schema cannot express (a reserved env name, a folder missing on the server, ...), with 400.
"""

from __future__ import annotations

from typing import Any

from ashd import option_fields as fields
from ashd.config import PERMISSION_MODES
from ashd.events import MESSAGE_TYPES
from ashd.http.sessions import TIMELINE_TYPES
from ashd.options import (
    AGENT_NAME,
    BLOCK_TYPES,
    MAX_BLOCKS,
    MAX_PROMPT_CHARS,
    MAX_SYSTEM_PROMPT_CHARS,
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
    "mcpServers": {
        "type": "object", "maxProperties": fields.MAX_MCP_SERVERS, "propertyNames": {"pattern": fields.NAME.pattern},
        "description": "MCP servers for this session (merged over the agent's .mcp.json). A command server "
                       "runs inside the sandbox; a url server must be on the agent's egress allowlist "
                       "(.ashd/sandbox.json egress.allow), else 400. A server that cannot start or be "
                       "reached gives an error event in the turn.",
        "additionalProperties": {"oneOf": [
            _obj({"type": {"const": "stdio"}, "command": {"type": "string", "minLength": 1},
                  "args": {"type": "array", "items": STRING},
                  "env": {"type": "object", "additionalProperties": STRING}}, required=["command"], closed=True),
            _obj({"type": {"enum": list(fields.MCP_TRANSPORTS), "default": "http"},
                  "url": {"type": "string", "format": "uri", "pattern": "^https?://"},
                  "headers": {"type": "object", "additionalProperties": STRING}}, required=["url"], closed=True),
        ]},
    },
    "betas": {"type": "array", "maxItems": 20, "items": {"type": "string", "pattern": fields.BETA.pattern},
              "description": "anthropic-beta names the CLI sends with each model request"},
    "subagents": {
        "type": "object", "maxProperties": fields.MAX_SUBAGENTS, "propertyNames": {"pattern": fields.NAME.pattern},
        "description": "the SDK's agent definitions, callable by the Agent tool",
        "additionalProperties": _obj({
            "description": {"type": "string", "minLength": 1}, "prompt": {"type": "string", "minLength": 1},
            "tools": _TOOLS, "disallowedTools": _TOOLS, "skills": _TOOLS, "model": STRING,
            "permissionMode": {"enum": list(PERMISSION_MODES)},
            "maxTurns": {"type": "integer", "minimum": 1, "maximum": fields.MAX_TURNS},
            "effort": {"enum": list(fields.EFFORTS)},
        }, required=["description", "prompt"], closed=True),
    },
    "initialAgent": {"type": "string", "pattern": fields.NAME.pattern,
                     "description": "the agent (a subagent or one of .claude/agents) the main thread runs as"},
}

_COUNTS: Schema = {"type": "object", "additionalProperties": {"type": "integer"}}
_MILLIS: Schema = {"type": ["integer", "null"], "description": "milliseconds, nearest-rank; null without turns"}
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
        "runtime": {"type": "string", "enum": ["warm", "parked"],
                    "description": "ashd's addition: warm while the session's CLI lives; parked without one "
                                   "(pool.park_after_ms, pool.max_warm_sessions): its next message starts it "
                                   "again with the conversation"},
    }),
    "Message": _obj({
        "id": STRING, "sessionId": STRING, "tenantId": STRING,
        "role": STRING, "type": {"type": "string", "enum": list(MESSAGE_TYPES)},
        "content": {"type": "string", "description": "a JSON document"},
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
    "Analytics": _obj({
        "agents": _obj({"total": {"type": "integer"}}),
        "sessions": _obj({"total": {"type": "integer"}, "byStatus": _COUNTS}),
        "messages": _obj({"total": {"type": "integer"}, "byRole": _COUNTS}),
        "usage": {"$ref": "#/components/schemas/UsageStats"},
        "latency": _obj({"turns": {"type": "integer"}, **{name: _MILLIS for name in (
            "turnP50Ms", "turnP95Ms", "firstEventP50Ms", "firstEventP95Ms")}}),
        "evals": _obj({"totalRuns": {"type": "integer"}, "byStatus": _COUNTS}),
    }, required=["agents", "sessions", "usage", "evals"]),
    "PoolStats": _obj({name: {"type": "integer", "minimum": 0} for name in (
        "total", "cold", "warming", "warm", "waiting", "running", "maxCapacity",
        "resumeWarmHits", "resumeColdHits", "preWarmHits")}),
    "Health": _obj({
        "status": {"enum": ["ok", "degraded"]}, "version": STRING, "coordinatorId": STRING,
        "statusReason": {"type": ["string", "null"], "description": "why degraded (ashd's addition)"},
        "lastStartFailure": {"type": ["object", "null"], "description": "the last failed sandbox start: "
                             "at, reason, sessionId (details only for the caller's tenant; ashd's addition)"},
        "activeSessions": {"type": "integer"}, "activeSandboxes": {"type": "integer"},
        "remoteRunners": {"type": "integer"}, "uptime": {"type": "integer", "description": "seconds"},
        "pool": ref("PoolStats"),
        "isolation": {"type": ["object", "null"], "description": "active sandbox layers (ashd's addition)"},
    }, required=["status", "version", "uptime"]),  # the rest only with a valid key (health.py)
    "Probe": _obj({"status": {"enum": ["live", "ready", "not ready"]}, "version": STRING,
                   "reason": STRING}, required=["status"]),
    "DeployAgent": {
        **_obj({
            "name": {"type": "string", "pattern": AGENT_NAME.pattern},
            "path": {"type": "string", "minLength": 1,
                     "description": "an absolute folder on the server with a CLAUDE.md (400 otherwise), "
                                    "walked without following symlinks; needs the operator's deploy-path "
                                    "grant or a folder inside agents.path_roots (403 otherwise); never "
                                    "inside ashd's data dir or /run (403)"},
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
        "credentialId": {**UUID, "description": "a stored anthropic credential of this tenant: the model "
                                               "proxy's upstream key for this session (never in the sandbox)"},
    }, required=["agent"]),
    "SessionConfig": _obj(dict(_SESSION_FIELDS), required=[], closed=True),
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
        "model": {"type": "string", "minLength": 1, "maxLength": 100, "description": "this turn only"},
        "maxTurns": {"type": "integer", "minimum": 1, "maximum": fields.MAX_TURNS,
                     "description": "this turn stops after this many model turns (result subtype error_max_turns)"},
        "maxBudgetUsd": {"type": "number", "exclusiveMinimum": 0,
                         "description": "this turn stops once it has cost this much (error_max_budget_usd)"},
        "effort": {"enum": list(fields.EFFORTS), "description": "this turn's effort (output_config.effort)"},
        "thinking": _obj({"type": {"enum": list(fields.THINKING_TYPES)},
                          "budgetTokens": {"type": "integer", "minimum": 1, "maximum": fields.MAX_THINKING_TOKENS,
                                           "description": "required for type enabled, refused otherwise"}},
                         required=["type"], closed=True),
        "outputFormat": _obj({"type": {"const": "json_schema"}, "schema": {"type": "object"}}, closed=True) | {
            "description": "the turn ends with structured output of this JSON Schema, returned in the result "
                           "message's structured_output"},
    }, required=["content"]),
}


def wrapped(key: str, schema: Schema) -> Schema:
    """Ash's envelope: ``{"session": {...}}`` and the like."""
    return _obj({key: schema})


# -- api keys (ashd/http/keys.py) --
_SCOPES = {"type": "array", "minItems": 1, "uniqueItems": True,
           "items": {"enum": ["admin", "write", "read", "deploy-path"]},
           "description": "admin ⊃ write ⊃ read; a key can only grant scopes it has itself. "
                          "deploy-path (register server folders) only the operator grants, "
                          "through /api/internal/api-keys"}
_KEY_PREFIX: Schema = {"type": ["string", "null"]}
SCHEMAS.update({
    "ApiKey": _obj({
        "id": STRING, "tenantId": STRING, "label": STRING, "scopes": _SCOPES,
        "createdAt": {**TIMESTAMP, "description": "ISO-8601 UTC; for the \"env\" entry (ASH_API_KEY): "
                                                  "when this ashd started"},
        "keyPrefix": {**_KEY_PREFIX, "description": "the key's first 8 characters; null for keys minted "
                                                    "before ashd stored them, and for an ASH_API_KEY "
                                                    "shorter than 32 characters"},
    }, required=["id", "label", "scopes", "createdAt", "keyPrefix"]),
    "NewApiKey": _obj({
        "id": STRING, "key": {"type": "string", "description": "the key itself, shown only once"},
        "tenantId": STRING, "label": STRING, "scopes": _SCOPES, "createdAt": STRING, "keyPrefix": _KEY_PREFIX,
    }, required=["id", "key", "scopes"]),
    "CreateApiKey": _obj({
        "label": {"type": "string", "maxLength": 200},
        "scopes": {**_SCOPES, "description": "default: the scopes of the key asking (without deploy-path); "
                                             "asking for deploy-path is 403"},
    }, required=[]),
    "CreateTenantApiKey": _obj({
        "tenantId": {"type": "string", "pattern": r"^[a-zA-Z0-9_-]{1,128}$"},
        "label": {"type": "string", "maxLength": 200, "description": "default platform-<tenantId>"},
        "scopes": {**_SCOPES, "description": "default [\"admin\"]"},
    }, required=["tenantId"]),
})


# -- credentials, agent versions (ashd/http/credentials.py, ashd/http/versions.py) --
_VERSION_FIELDS: dict[str, Schema] = {
    "name": {"type": "string", "minLength": 1, "maxLength": 255},
    "systemPrompt": {"type": ["string", "null"], "maxLength": MAX_SYSTEM_PROMPT_CHARS},
    "releaseNotes": {"type": ["string", "null"], "maxLength": 100_000},
    "knowledgeFiles": {"type": "array", "maxItems": 200,
                       "items": {"type": "string", "minLength": 1, "maxLength": 1024},
                       "description": "metadata only"},
}
SCHEMAS.update({
    "Credential": _obj({
        "id": UUID, "type": {"enum": ["anthropic", "openai", "bedrock", "custom"]}, "label": STRING,
        "active": {"type": "boolean"}, "createdAt": TIMESTAMP, "lastUsedAt": {"type": ["string", "null"]},
    }),
    "CreateCredential": _obj({
        "type": {"enum": ["anthropic", "openai", "bedrock", "custom"]},
        "key": {"type": "string", "minLength": 1, "description": "the upstream secret (at most 16 KiB)"},
        "label": {"type": "string", "maxLength": 255},
    }, required=["type", "key"], closed=True),
    "AgentVersion": _obj({
        "id": UUID, "agentName": STRING, "versionNumber": {"type": "integer", "minimum": 1},
        "name": STRING, "systemPrompt": NULLABLE_STRING, "releaseNotes": NULLABLE_STRING,
        "isActive": {"type": "boolean"}, "knowledgeFiles": {"type": "array", "items": STRING},
        "createdBy": NULLABLE_STRING, "createdAt": TIMESTAMP, "updatedAt": TIMESTAMP,
    }),
    "CreateAgentVersion": _obj({
        **_VERSION_FIELDS,
        "cloneFrom": {"oneOf": [{"type": "integer", "minimum": 1}, UUID],
                      "description": "copy systemPrompt, releaseNotes, knowledgeFiles from this version "
                                     "(number or id; 400 if absent); given fields win"},
    }, required=[], closed=True),
    "PatchAgentVersion": _obj(dict(_VERSION_FIELDS), required=[], closed=True),
    "PatchAgent": _obj({"env": _ENV, "config": ref("AgentConfig")}, required=[], closed=True),
})
# -- exec, logs, queue (ashd/http/ops.py, ashd/http/queue.py) --
_QUEUE_STATUS: Schema = {"type": "string", "enum": ["pending", "processing", "completed", "failed", "cancelled"]}
SCHEMAS.update({
    "ExecRequest": _obj({
        "command": {"type": "string", "minLength": 1, "maxLength": 100_000, "pattern": r"\S",
                    "description": "run as /bin/sh -c <command> inside the session's sandbox"},
        "timeout": {"type": "integer", "minimum": 1, "maximum": 300_000, "default": 30_000,
                    "description": "milliseconds; the command's process group is killed after it"},
    }, required=["command"], closed=True),
    "ExecResult": _obj({
        "exitCode": {"type": "integer", "description": "124 after a timeout; 128+N if killed by signal N"},
        "stdout": STRING, "stderr": STRING,
        "truncated": {"type": "boolean", "description": "a stream passed 10 MB and was cut (ashd's addition)"},
        "timedOut": {"type": "boolean", "description": "killed at the timeout (ashd's addition)"},
    }),
    "LogLine": _obj({
        "index": {"type": "integer", "minimum": 0}, "level": {"type": "string", "enum": ["stdout", "stderr", "system"]},
        "text": STRING, "ts": TIMESTAMP,
    }),
    "QueueItem": _obj({
        "id": UUID, "tenantId": STRING, "sessionId": {"type": ["string", "null"]}, "agentName": STRING,
        "prompt": STRING, "status": _QUEUE_STATUS, "priority": {"type": "integer"},
        "retryCount": {"type": "integer", "minimum": 0}, "maxRetries": {"type": "integer", "minimum": 0},
        "error": NULLABLE_STRING, "retryAfter": {"type": ["string", "null"]},
        "startedAt": {"type": ["string", "null"]}, "completedAt": {"type": ["string", "null"]},
        "createdAt": TIMESTAMP,
    }),
    "Enqueue": _obj({
        "agentName": {"type": "string", "pattern": AGENT_NAME.pattern},
        "prompt": {"type": "string", "minLength": 1, "maxLength": MAX_PROMPT_CHARS, "pattern": r"\S"},
        "sessionId": {**UUID, "description": "run in this session (same agent; resumed if paused)"},
        "priority": {"type": "integer", "minimum": -1_000_000, "maximum": 1_000_000, "default": 0,
                     "description": "higher runs first"},
        "maxRetries": {"type": "integer", "minimum": 0, "maximum": 10, "default": 3},
    }, required=["agentName", "prompt"], closed=True),
    "QueueStats": _obj({name: {"type": "integer", "minimum": 0}
                        for name in ("pending", "processing", "completed", "failed", "cancelled")}),
})
