"""ashctl flags for Ash's session and message options (``session create``, ``send``, ``chat``).

Each flag maps to one request field; the server validates the values (a bad one is its 400,
shown as the error). JSON-valued flags are parsed here so a typo is a usage error at once.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

EFFORTS = ("low", "medium", "high", "xhigh", "max")
PERMISSION_MODES = ("default", "acceptEdits", "plan", "bypassPermissions", "dontAsk", "auto", "permissionsByAgent")


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def add_session_flags(sub: argparse.ArgumentParser) -> None:
    """The per-session options (``session create``)."""
    sub.add_argument("--permission-mode", choices=PERMISSION_MODES, metavar="MODE",
                     help="how tool use is approved: " + ", ".join(PERMISSION_MODES))
    sub.add_argument("--allowed-tool", action="append", default=[], metavar="RULE",
                     help="auto-approve this tool or rule, e.g. Bash or 'Bash(npm test:*)' (repeatable)")
    sub.add_argument("--disallowed-tool", action="append", default=[], metavar="TOOL",
                     help="remove this tool from the agent (repeatable)")
    sub.add_argument("--beta", action="append", default=[], metavar="NAME", help="anthropic-beta name (repeatable)")
    sub.add_argument("--mcp-servers", type=_json_object, metavar="JSON",
                     help='MCP servers: {"name": {"command": ..., "args": [...]} or {"url": ...}}')
    sub.add_argument("--subagents", type=_json_object, metavar="JSON",
                     help='subagents: {"name": {"description": ..., "prompt": ...}}')
    sub.add_argument("--initial-agent", metavar="NAME", help="the agent the main thread runs as")


def session_options(args: argparse.Namespace) -> dict[str, Any]:
    """The client's snake_case options from the session flags (None values are omitted)."""
    return {"permission_mode": args.permission_mode, "allowed_tools": args.allowed_tool or None,
            "disallowed_tools": args.disallowed_tool or None, "betas": args.beta or None,
            "mcp_servers": args.mcp_servers, "subagents": args.subagents, "initial_agent": args.initial_agent}


def add_turn_flags(sub: argparse.ArgumentParser) -> None:
    """The per-message options (``send``, ``chat``); they apply to that turn only."""
    sub.add_argument("--max-turns", type=int, metavar="N", help="stop this turn after N model turns")
    sub.add_argument("--max-budget-usd", type=float, metavar="USD", help="stop this turn once it cost this much")
    sub.add_argument("--effort", choices=EFFORTS, help="how much effort the model spends on this turn")
    sub.add_argument("--thinking-tokens", type=int, metavar="N",
                     help="extended thinking with this token budget for this turn")
    sub.add_argument("--output-schema", type=_json_object, metavar="JSON",
                     help="answer with structured output of this JSON Schema (in the result)")


def turn_options(args: argparse.Namespace) -> dict[str, Any]:
    thinking = None if args.thinking_tokens is None else {"type": "enabled", "budgetTokens": args.thinking_tokens}
    output = None if args.output_schema is None else {"type": "json_schema", "schema": args.output_schema}
    return {"max_turns": args.max_turns, "max_budget_usd": args.max_budget_usd, "effort": args.effort,
            "thinking": thinking, "output_format": output}
