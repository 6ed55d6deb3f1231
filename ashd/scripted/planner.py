"""Decide the scripted reply to one Messages API request.

Pure and deterministic: the same request body and :class:`ModelSettings` always give the
same :class:`~ashd.scripted.reply.Reply`, ids included. The rules are documented in
``docs/scripted-model.md``; in short: title side requests get a fixed title, otherwise the
directives of the latest prompt (or of the matching script entry) are split at tool calls
and the response for the current tool round trip is built.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, replace
from typing import Any

from ashd.scripted.conversation import Conversation, is_title_request, read_conversation
from ashd.scripted.directives import (
    Directive,
    DirectiveError,
    EchoHistory,
    EchoSystem,
    Fail,
    Say,
    Sleep,
    Slow,
    Think,
    ToolCall,
    Usage,
    parse_directives,
    split_responses,
)
from ashd.scripted.reply import (
    BlockOut,
    ErrorOut,
    Reply,
    TextOut,
    ThinkingOut,
    ToolUseOut,
)
from ashd.scripted.script import ScriptEntry, find_reply

TITLE_TEXT = json.dumps({"title": "Scripted session"})
PROMPT_ECHO_CHARS = 200
SYSTEM_ECHO_CHARS = 20_000  # [[echo-system]]: the CLI's system prompt may be long
TOOL_ECHO_CHARS = 2000


@dataclass(frozen=True)
class ModelSettings:
    """Server-wide defaults: reported token usage and the optional script."""

    input_tokens: int = 100
    output_tokens: int = 20
    script: tuple[ScriptEntry, ...] = ()


def plan_reply(body: dict[str, Any], settings: ModelSettings) -> Reply:
    """Plan the response to the request ``body`` (a decoded Messages API request)."""
    digest = hashlib.sha256(
        json.dumps(body.get("messages"), sort_keys=True, default=str).encode()
    ).hexdigest()
    base = Reply(
        message_id=f"msg_scripted_{digest[:24]}",
        blocks=(),
        input_tokens=settings.input_tokens,
        output_tokens=settings.output_tokens,
    )
    if is_title_request(body):
        return replace(base, blocks=(TextOut(TITLE_TEXT),))
    conversation = replace(read_conversation(body.get("messages")), system=_system_text(body.get("system")))
    try:
        directives = _directives_for(conversation.prompt, settings.script)
    except DirectiveError as exc:
        return replace(base, blocks=(TextOut(f"scripted: bad directive: {exc}"),))
    stream = bool(body.get("stream"))
    return _build(base, directives, conversation, digest[:16], stream)


def _directives_for(prompt: str, script: tuple[ScriptEntry, ...]) -> tuple[Directive, ...]:
    """Directives from the matching script entry, else from the prompt itself.

    A script reply without any directive is said verbatim.
    """
    scripted = find_reply(script, prompt)
    if scripted is None:
        return parse_directives(prompt)
    return parse_directives(scripted) or (Say(scripted),)


def _build(
    base: Reply,
    directives: tuple[Directive, ...],
    conv: Conversation,
    id_seed: str,
    stream: bool,
) -> Reply:
    """Build the response for round trip ``conv.round_trips`` of ``directives``."""
    groups = split_responses(directives)
    step = conv.round_trips
    group = groups[step] if step < len(groups) else ()
    seen = [d for g in groups[: step + 1] for d in g]
    reply = _with_settings(base, seen)
    blocks: list[BlockOut] = []
    pause = 0
    for directive in group:
        if isinstance(directive, Sleep):
            pause += directive.ms
        elif isinstance(directive, Fail):
            if directive.stream_only and not stream:
                continue
            message = directive.message or "scripted error"
            error = ErrorOut(
                directive.status, message, directive.should_retry, directive.stream_only
            )
            return _finish(reply, blocks, pause, error)
        elif (block := _block(directive, conv, f"toolu_scripted_{id_seed}_{step}")) is not None:
            if blocks:
                block = replace(block, pause_ms=pause)
            else:
                reply = replace(reply, delay_ms=pause)
            blocks.append(block)
            pause = 0
    if not blocks:
        blocks.append(_fallback(conv, step))
    return _finish(reply, blocks, pause, None)


def _finish(reply: Reply, blocks: list[BlockOut], pause: int, error: ErrorOut | None) -> Reply:
    """Attach blocks, the trailing pause (or leading delay) and the error to ``reply``."""
    if not blocks:
        return replace(reply, delay_ms=reply.delay_ms + pause, error=error)
    return replace(reply, blocks=tuple(blocks), tail_ms=pause, error=error)


def _block(directive: Directive, conv: Conversation, tool_id: str) -> BlockOut | None:
    """The content block a directive produces, or None for settings."""
    if isinstance(directive, Say):
        return TextOut(directive.text)
    if isinstance(directive, Think):
        return ThinkingOut(directive.text, _signature(directive.text))
    if isinstance(directive, ToolCall):
        return ToolUseOut(tool_id, directive.name, dict(directive.input))
    if isinstance(directive, EchoHistory):
        return TextOut("history: " + " | ".join(conv.history))
    if isinstance(directive, EchoSystem):
        return TextOut("system: " + conv.system[:SYSTEM_ECHO_CHARS])
    return None


def _system_text(system: Any) -> str:
    """A Messages API ``system`` (a string or text blocks) as one string."""
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        return " | ".join(b["text"] for b in system if isinstance(b, dict) and isinstance(b.get("text"), str))
    return ""


def _fallback(conv: Conversation, step: int) -> TextOut:
    """Text for a response no directive fills: echo the tool result or the prompt."""
    result = conv.last_result
    if step > 0 and result is not None:
        label = "tool said (error)" if result.is_error else "tool said"
        return TextOut(f"{label}: {result.text[:TOOL_ECHO_CHARS]}")
    return TextOut(f"ok: {conv.prompt[:PROMPT_ECHO_CHARS]}")


def _with_settings(reply: Reply, seen: list[Directive]) -> Reply:
    """Apply the last ``slow`` and ``usage`` directives up to the current response."""
    for directive in seen:
        if isinstance(directive, Slow):
            reply = replace(reply, chunk_ms=directive.ms)
        elif isinstance(directive, Usage):
            reply = replace(
                reply,
                input_tokens=_pick(directive.input_tokens, reply.input_tokens),
                output_tokens=_pick(directive.output_tokens, reply.output_tokens),
            )
    return reply


def _pick(value: int | None, default: int) -> int:
    """``value`` unless it is None."""
    return default if value is None else value


def _signature(thinking: str) -> str:
    """A deterministic stand-in for the API's opaque thinking signature."""
    return base64.b64encode(hashlib.sha256(thinking.encode()).digest()).decode()
