"""Validated request options for sessions and messages (pure; raises BadRequest)."""

from __future__ import annotations

import re
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, NoReturn
from urllib.parse import urlsplit

from ashd import option_fields as fields
from ashd.config import PERMISSION_MODES
from ashd.errors import BadRequest
from ashd.limit_fields import parse_budget, session_request
from ashd.user_env import validate_user_env

AGENT_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,255}$")
MAX_PROMPT_CHARS = 500_000
MAX_SYSTEM_PROMPT_CHARS = 1_000_000
MAX_BLOCKS = 20
BLOCK_TYPES = ("text", "image", "document")
# What PATCH /api/sessions/:id/config may change (Ash's set, plus the prompt and mode).
CONFIG_FIELDS = ("model", "allowedTools", "disallowedTools", "systemPrompt", "permissionMode", "mcpServers",
                 "betas", "subagents", "initialAgent")


def check_agent_name(name: object) -> str:
    if not isinstance(name, str) or not AGENT_NAME.match(name):
        raise BadRequest("agent name must be 1-255 characters of letters, digits, '_' or '-'")
    return name


def _optional_str(body: dict[str, Any], key: str, limit: int) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{key} must be a non-empty string")
    if len(value) > limit:
        raise BadRequest(f"{key} is longer than {limit} characters")
    if "\x00" in value:  # no database stores it (PostgreSQL refuses NUL in text)
        raise BadRequest(f"{key} must not contain NUL characters")
    return value


def _str_list(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value) or len(value) > 200:
        raise BadRequest(f"{key} must be a list of at most 200 non-empty strings")
    return list(value)


@dataclass(frozen=True)
class SessionOptions:
    system_prompt: str | None = None
    model: str | None = None
    permission_mode: str | None = None
    allowed_tools: list[str] = field(default_factory=list)
    disallowed_tools: list[str] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)
    # Sandbox limits for this session ({"memoryMb": ..., ...}); may only lower the agent's.
    limits: dict[str, Any] | None = None
    max_budget_usd: float | None = None
    # A stored credential (ashd/store/vault.py) the model proxy uses as this session's upstream key.
    credential_id: str | None = None
    # The SDK's MCP server configs: stdio ones run inside the sandbox, url ones go through
    # its egress allowlist (checked against the agent's at create and PATCH).
    mcp_servers: dict[str, dict[str, Any]] = field(default_factory=dict)
    betas: list[str] = field(default_factory=list)
    # The SDK's agent definitions ({name: {description, prompt, tools?, ...}}).
    subagents: dict[str, dict[str, Any]] = field(default_factory=dict)
    initial_agent: str | None = None

    @classmethod
    def from_request(cls, body: dict[str, Any]) -> SessionOptions:
        _, budget = session_request(body)  # validates limits and maxBudgetUsd (BadRequest)
        mode = _optional_str(body, "permissionMode", 64)
        if mode == "permissionsByAgent":
            mode = "default"  # Ash's name for "let .claude/settings.json decide"
        if mode is not None and mode not in PERMISSION_MODES:
            raise BadRequest(f"permissionMode must be one of {', '.join(PERMISSION_MODES)}, permissionsByAgent")
        return cls(
            system_prompt=_optional_str(body, "systemPrompt", MAX_SYSTEM_PROMPT_CHARS),
            model=_optional_str(body, "model", 100),
            permission_mode=mode,
            allowed_tools=_str_list(body, "allowedTools"),
            disallowed_tools=_str_list(body, "disallowedTools"),
            extra_env=validate_user_env(body.get("extraEnv"), "extraEnv"),
            limits=dict(body["limits"]) if body.get("limits") is not None else None,
            max_budget_usd=budget,
            credential_id=_credential_id(body.get("credentialId")),
            mcp_servers=fields.mcp_servers(body.get("mcpServers")),
            betas=fields.betas(body.get("betas")),
            subagents=fields.subagents(body.get("subagents")),
            initial_agent=fields.agent_name(body.get("initialAgent"), "initialAgent"),
        )

    def to_request(self) -> dict[str, Any]:
        """The request fields these options came from (the inverse of from_request)."""
        form: dict[str, Any] = {
            "systemPrompt": self.system_prompt, "model": self.model, "permissionMode": self.permission_mode,
            "allowedTools": self.allowed_tools or None, "disallowedTools": self.disallowed_tools or None,
            "extraEnv": self.extra_env or None, "limits": self.limits, "maxBudgetUsd": self.max_budget_usd,
            "credentialId": self.credential_id, "mcpServers": self.mcp_servers or None, "betas": self.betas or None,
            "subagents": self.subagents or None, "initialAgent": self.initial_agent,
        }
        return {k: v for k, v in form.items() if v is not None}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any] | None) -> SessionOptions:
        known = {k: v for k, v in (raw or {}).items() if k in cls.__dataclass_fields__}
        return cls(**known)


def _credential_id(value: object) -> str | None:
    if value is None:
        return None
    try:
        return str(uuid.UUID(value)) if isinstance(value, str) else _bad_credential(value)
    except ValueError:
        return _bad_credential(value)


def _bad_credential(value: object) -> NoReturn:
    raise BadRequest(f"bad credential: credentialId must be a credential id (UUID), got {value!r}")


@dataclass(frozen=True)
class MessageOptions:
    """One message's content and the options that apply to its turn only."""

    content: str | list[dict[str, Any]]
    include_partial_messages: bool = False
    model: str | None = None
    max_turns: int | None = None
    max_budget_usd: float | None = None
    effort: str | None = None
    thinking: dict[str, Any] | None = None  # the SDK's shape: {type, budget_tokens?}
    output_format: dict[str, Any] | None = None

    @classmethod
    def from_request(cls, body: dict[str, Any]) -> MessageOptions:
        partial = body.get("includePartialMessages", False)
        if not isinstance(partial, bool):
            raise BadRequest("includePartialMessages must be true or false")
        return cls(content=_content(body.get("content")), include_partial_messages=partial,
                   model=_optional_str(body, "model", 100),
                   max_turns=fields.positive_int(body.get("maxTurns"), "maxTurns", fields.MAX_TURNS),
                   max_budget_usd=parse_budget(body.get("maxBudgetUsd"), "maxBudgetUsd"),
                   effort=fields.effort(body.get("effort")), thinking=fields.thinking(body.get("thinking")),
                   output_format=fields.output_format(body.get("outputFormat")))

    def turn_settings(self) -> dict[str, Any]:
        """The options the bridge starts the CLI with for this turn only (wire names)."""
        form = {"maxTurns": self.max_turns, "maxBudgetUsd": self.max_budget_usd, "effort": self.effort,
                "thinking": self.thinking, "outputFormat": self.output_format}
        return {k: v for k, v in form.items() if v is not None}


def _content(content: object) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        if not content.strip():
            raise BadRequest("content must not be empty")
        if len(content) > MAX_PROMPT_CHARS:
            raise BadRequest(f"content is longer than {MAX_PROMPT_CHARS} characters")
        return content
    if isinstance(content, list):
        if not 1 <= len(content) <= MAX_BLOCKS:
            raise BadRequest(f"content must have 1 to {MAX_BLOCKS} blocks")
        for i, block in enumerate(content):
            if not isinstance(block, dict) or block.get("type") not in BLOCK_TYPES:
                raise BadRequest(f"content[{i}] must be a block of type {', '.join(BLOCK_TYPES)}")
        return list(content)
    raise BadRequest("content is required: a string or a list of content blocks")


def check_tunnelled(options: SessionOptions, *, sandboxed: bool) -> None:
    """400 for a plain-http url MCP server of a sandboxed session. The sandbox reaches the
    network only through the egress proxy, which tunnels (CONNECT) and so carries https only;
    the CLI sends a plain-http request to the proxy in the clear, is refused, and reports the
    server as asking for a sign-in. Pure."""
    if not sandboxed:
        return
    for name, server in sorted(options.mcp_servers.items()):
        if urlsplit(server.get("url", "")).scheme == "http":
            raise BadRequest(f"mcpServers.{name}: a sandbox reaches url servers through the egress proxy, which "
                             "carries https only; serve it over https (or use a stdio server)")
