"""Validators for the structured request options (pure; raise BadRequest naming the field).

Each returns the value in the shape ashd stores and the bridge hands to the Claude Agent
SDK: MCP servers (``mcpServers``), subagent definitions (``subagents``), ``thinking``,
``outputFormat``, ``effort``, ``maxTurns`` and ``betas``.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from ashd.config import PERMISSION_MODES
from ashd.errors import BadRequest

NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
BETA = re.compile(r"^[a-z0-9][a-z0-9.-]{0,99}$")
EFFORTS = ("low", "medium", "high", "xhigh", "max")
THINKING_TYPES = ("enabled", "adaptive", "disabled")
MAX_MCP_SERVERS = 20
MAX_SUBAGENTS = 50
MAX_TURNS = 1000
MAX_THINKING_TOKENS = 1_000_000
MAX_SCHEMA_BYTES = 100_000
MAX_TEXT = 100_000
MCP_TRANSPORTS = ("http", "sse")
SUBAGENT_LISTS = ("tools", "disallowedTools", "skills")
SUBAGENT_STRINGS = ("model",)


def _text(value: object, where: str, limit: int = MAX_TEXT) -> str:
    if not isinstance(value, str) or not value or len(value) > limit or "\x00" in value:
        raise BadRequest(f"{where} must be a non-empty string of at most {limit} characters (no NUL)")
    return value


def _strings(value: object, where: str, limit: int = 200) -> list[str]:
    if not isinstance(value, list) or len(value) > limit:
        raise BadRequest(f"{where} must be a list of at most {limit} strings")
    return [_text(v, f"{where}[{i}]", 1000) for i, v in enumerate(value)]


def _string_map(value: object, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or len(value) > 100:
        raise BadRequest(f"{where} must be an object of at most 100 string values")
    return {_text(k, f"{where} key", 256): _text(v, f"{where}.{k}", 10_000) for k, v in value.items()}


def _named(value: object, where: str, limit: int) -> dict[str, Any]:
    if not isinstance(value, dict) or len(value) > limit:
        raise BadRequest(f"{where} must be an object of at most {limit} entries keyed by name")
    for name, entry in value.items():
        if not NAME.match(name):
            raise BadRequest(f"{where} name {name!r} must be 1-64 letters, digits, '_' or '-'")
        if not isinstance(entry, dict):
            raise BadRequest(f"{where}.{name} must be an object")
    return value


def positive_int(value: object, where: str, high: int) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= high:
        raise BadRequest(f"{where} must be a whole number from 1 to {high}")
    return value


def effort(value: object) -> str | None:
    if value is None:
        return None
    if value not in EFFORTS:
        raise BadRequest(f"effort must be one of {', '.join(EFFORTS)}")
    return str(value)


def thinking(value: object) -> dict[str, Any] | None:
    """Ash's ``{type, budgetTokens?}`` -> the SDK's ``{type, budget_tokens?}``."""
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("type") not in THINKING_TYPES:
        raise BadRequest(f"thinking must be an object with type {', '.join(THINKING_TYPES)}")
    unknown = sorted(set(value) - {"type", "budgetTokens"})
    if unknown:
        raise BadRequest(f"thinking has unknown field(s) {', '.join(unknown)}; use type and budgetTokens")
    if value["type"] != "enabled":
        if value.get("budgetTokens") is not None:
            raise BadRequest("thinking.budgetTokens is only for type enabled")
        return {"type": value["type"]}
    budget = positive_int(value.get("budgetTokens"), "thinking.budgetTokens", MAX_THINKING_TOKENS)
    if budget is None:
        raise BadRequest("thinking of type enabled needs budgetTokens (a whole number of tokens)")
    return {"type": "enabled", "budget_tokens": budget}


def output_format(value: object) -> dict[str, Any] | None:
    """``{type: "json_schema", schema: {...}}``: the reply is structured output of that schema."""
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("type") != "json_schema" or not isinstance(value.get("schema"), dict):
        raise BadRequest('outputFormat must be {"type": "json_schema", "schema": {...a JSON Schema object...}}')
    if len(json.dumps(value["schema"])) > MAX_SCHEMA_BYTES:
        raise BadRequest(f"outputFormat.schema is larger than {MAX_SCHEMA_BYTES} bytes")
    try:  # the CLI refuses to start with a schema that is not one
        Draft202012Validator.check_schema(value["schema"])
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "(top)"
        raise BadRequest(f"outputFormat.schema is not a valid JSON Schema at {where}: {exc.message}") from None
    return {"type": "json_schema", "schema": value["schema"]}


def betas(value: object) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > 20 or not all(isinstance(b, str) and BETA.match(b) for b in value):
        raise BadRequest("betas must be a list of at most 20 beta names like context-1m-2025-08-07")
    return list(value)


def agent_name(value: object, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not NAME.match(value):
        raise BadRequest(f"{where} must be 1-64 letters, digits, '_' or '-'")
    return value


def subagents(value: object) -> dict[str, dict[str, Any]]:
    """``{name: {description, prompt, tools?, disallowedTools?, model?, maxTurns?, effort?,
    permissionMode?, skills?}}``: the SDK's AgentDefinition fields."""
    if value is None:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for name, entry in _named(value, "subagents", MAX_SUBAGENTS).items():
        where = f"subagents.{name}"
        known = {"description", "prompt", "maxTurns", "effort", "permissionMode", *SUBAGENT_LISTS, *SUBAGENT_STRINGS}
        unknown = sorted(set(entry) - known)
        if unknown:
            raise BadRequest(f"{where} has unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        agent: dict[str, Any] = {"description": _text(entry.get("description"), f"{where}.description"),
                                 "prompt": _text(entry.get("prompt"), f"{where}.prompt", 1_000_000)}
        for key in SUBAGENT_LISTS:
            if entry.get(key) is not None:
                agent[key] = _strings(entry[key], f"{where}.{key}")
        for key in SUBAGENT_STRINGS:
            if entry.get(key) is not None:
                agent[key] = _text(entry[key], f"{where}.{key}", 100)
        if entry.get("permissionMode") is not None:
            if entry["permissionMode"] not in PERMISSION_MODES:
                raise BadRequest(f"{where}.permissionMode must be one of {', '.join(PERMISSION_MODES)}")
            agent["permissionMode"] = entry["permissionMode"]
        if entry.get("maxTurns") is not None:
            agent["maxTurns"] = positive_int(entry["maxTurns"], f"{where}.maxTurns", MAX_TURNS)
        if entry.get("effort") is not None:
            agent["effort"] = effort(entry["effort"])
        out[name] = agent
    return out


def mcp_servers(value: object) -> dict[str, dict[str, Any]]:
    """Ash's ``{name: {command, args?, env?} | {url, type?, headers?}}`` -> SDK MCP configs.

    A ``command`` server runs inside the sandbox (the CLI starts it there); a ``url`` server
    is reached through the sandbox's egress allowlist (see :func:`refuse_unlisted_hosts`).
    """
    if value is None:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for name, entry in _named(value, "mcpServers", MAX_MCP_SERVERS).items():
        where = f"mcpServers.{name}"
        if ("command" in entry) == ("url" in entry):
            raise BadRequest(f"{where} needs exactly one of command (a stdio server) or url (an http/sse server)")
        out[name] = _stdio(entry, where) if "command" in entry else _remote(entry, where)
    return out


def _stdio(entry: dict[str, Any], where: str) -> dict[str, Any]:
    unknown = sorted(set(entry) - {"type", "command", "args", "env"})
    if unknown or entry.get("type", "stdio") != "stdio":
        raise BadRequest(f"{where}: a stdio server takes command, args and env only")
    server: dict[str, Any] = {"type": "stdio", "command": _text(entry["command"], f"{where}.command", 1000)}
    if entry.get("args") is not None:
        server["args"] = _strings(entry["args"], f"{where}.args")
    if entry.get("env") is not None:
        server["env"] = _string_map(entry["env"], f"{where}.env")
    return server


def _remote(entry: dict[str, Any], where: str) -> dict[str, Any]:
    unknown = sorted(set(entry) - {"type", "url", "headers"})
    kind = entry.get("type", "http")
    if unknown or kind not in MCP_TRANSPORTS:
        raise BadRequest(f"{where}: a url server takes url, type ({', '.join(MCP_TRANSPORTS)}) and headers only")
    url = _http_url(_text(entry["url"], f"{where}.url", 2000), f"{where}.url")
    server: dict[str, Any] = {"type": kind, "url": url}
    if entry.get("headers") is not None:
        server["headers"] = _string_map(entry["headers"], f"{where}.headers")
    return server


def _http_url(url: str, where: str) -> str:
    try:
        parts = urlsplit(url)
        good = parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port or 1) > 0
    except ValueError:  # an unclosed IPv6 bracket, a port out of range, ...
        good = False
    if not good:
        raise BadRequest(f"{where} must be an http(s) URL with a host name")
    return url


def remote_hosts(servers: dict[str, dict[str, Any]]) -> dict[str, str]:
    """``{server name: host}`` of the url servers."""
    return {name: str(urlsplit(s["url"]).hostname) for name, s in servers.items() if "url" in s}
