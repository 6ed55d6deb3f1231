"""Read what the model needs out of a Messages API request body.

Pure. The Claude Code CLI sends the user turn as text blocks (a ``<system-reminder>``
block first, then the prompt), may insert a ``role: "system"`` message with the
environment section, and returns tool results as user messages holding ``tool_result``
blocks. :func:`read_conversation` reduces all that to a :class:`Conversation`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_REMINDER = re.compile(r"<system-reminder>.*?</system-reminder>", re.DOTALL)
# Text blocks the CLI adds on its own after an interrupt; they are not prompts.
_CLI_MARKERS = frozenset(
    {"[Request interrupted by user]", "[Request interrupted by user for tool use]"}
)
# The CLI's own request to continue after a stream broke off mid-response.
RESUME_PREFIX = "Your response above was cut off mid-stream."


@dataclass(frozen=True)
class ToolResult:
    """The text of one ``tool_result`` block (images and other parts are dropped)."""

    tool_use_id: str
    text: str
    is_error: bool


@dataclass(frozen=True)
class Conversation:
    """The parts of a request's ``messages`` that drive a scripted reply.

    ``prompt`` is the last real text block of the latest user message that has one (the
    CLI merges an unanswered prompt and the next one into one message, one block each),
    ``history`` every real text block of every user message, oldest first,
    ``round_trips`` the number of later user messages that carry tool results or the
    CLI's resume request, and ``last_result`` the final tool result of the last message.
    """

    prompt: str
    history: tuple[str, ...]
    round_trips: int
    last_result: ToolResult | None
    system: str = ""  # the request's system prompt, its text blocks joined by " | "


def read_conversation(messages: Any) -> Conversation:
    """Build a :class:`Conversation` from a request's ``messages`` value.

    Never raises on odd input: anything that is not a list of message objects counts as
    an empty conversation, and unknown block types are skipped.
    """
    prompts: list[str] = []
    round_trips = 0
    last_result: ToolResult | None = None
    for message in messages if isinstance(messages, list) else []:
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        blocks = _blocks(message.get("content"))
        texts = prompt_texts(blocks)
        results = [_tool_result(b) for b in blocks if b.get("type") == "tool_result"]
        if texts:
            prompts.extend(texts)
            round_trips = 0
        elif results or _asks_to_resume(blocks):
            round_trips += 1
        last_result = results[-1] if results else None
    return Conversation(
        prompt=prompts[-1] if prompts else "",
        history=tuple(prompts),
        round_trips=round_trips if prompts else 0,
        last_result=last_result,
    )


def prompt_texts(blocks: list[dict[str, Any]]) -> list[str]:
    """The real prompt texts of ``blocks``: reminders and the CLI's own blocks removed."""
    texts = (_REMINDER.sub("", text).strip() for text in _texts(blocks))
    return [t for t in texts if t and t not in _CLI_MARKERS and not t.startswith(RESUME_PREFIX)]


def _asks_to_resume(blocks: list[dict[str, Any]]) -> bool:
    """True when ``blocks`` hold the CLI's request to resume a broken-off response."""
    return any(text.startswith(RESUME_PREFIX) for text in _texts(blocks))


def _texts(blocks: list[dict[str, Any]]) -> list[str]:
    """The ``text`` of every text block."""
    return [
        block["text"]
        for block in blocks
        if block.get("type") == "text" and isinstance(block.get("text"), str)
    ]


def is_title_request(body: dict[str, Any]) -> bool:
    """True for the CLI's session-title side request (a json_schema asking for ``title``)."""
    config = body.get("output_config")
    fmt = config.get("format") if isinstance(config, dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return False
    schema = fmt.get("schema")
    properties = schema.get("properties") if isinstance(schema, dict) else None
    return isinstance(properties, dict) and "title" in properties


def _blocks(content: Any) -> list[dict[str, Any]]:
    """Normalise message content (a string or a list of blocks) to a list of blocks."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [block for block in content if isinstance(block, dict)]
    return []


def _tool_result(block: dict[str, Any]) -> ToolResult:
    """Flatten a ``tool_result`` block's content to text."""
    content = block.get("content")
    if isinstance(content, str):
        text = content
    else:
        text = "\n".join(_texts(_blocks(content)))
    return ToolResult(str(block.get("tool_use_id", "")), text, bool(block.get("is_error")))
