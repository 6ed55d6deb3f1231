"""Render a :class:`~ashd.scripted.reply.Reply` in the Anthropic Messages API wire format.

Pure. :func:`stream_events` gives the server-sent events of a streaming response (in the
order the real API sends them), :func:`message_body` the JSON of a non-streaming one and
:func:`error_body` Anthropic's error JSON. :func:`encode_event` frames one SSE event.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from ashd.scripted.reply import (
    BlockOut,
    ErrorOut,
    Reply,
    TextOut,
    ThinkingOut,
    ToolUseOut,
)

MAX_CHUNKS = 64
_PIECES = re.compile(r"\s*\S+\s*|\s+")


@dataclass(frozen=True)
class WireEvent:
    """One SSE event: wait ``pause_ms``, then send ``event: name`` with ``data``."""

    name: str
    data: dict[str, Any]
    pause_ms: int = 0


def encode_event(event: WireEvent) -> bytes:
    """Frame ``event`` as ``event: <name>\\ndata: <json>\\n\\n``."""
    return f"event: {event.name}\ndata: {json.dumps(event.data)}\n\n".encode()


def chunk_text(text: str) -> list[str]:
    """Split ``text`` into word-ish pieces (at most :data:`MAX_CHUNKS`) that join back to it.

    Each piece holds at least one word with its surrounding whitespace; long texts get
    several words per piece so a 2000-character tool echo stays a few dozen events.
    """
    words = _PIECES.findall(text)
    if not words:
        return [text]
    per_chunk = max(1, math.ceil(len(text) / MAX_CHUNKS))
    chunks: list[str] = []
    for word in words:
        if chunks and len(chunks[-1]) < per_chunk:
            chunks[-1] += word
        else:
            chunks.append(word)
    return chunks


def error_body(error: ErrorOut) -> dict[str, Any]:
    """Anthropic's error JSON for ``error``."""
    return {"type": "error", "error": {"type": error.error_type, "message": error.message}}


def usage(reply: Reply) -> dict[str, int]:
    """The full ``usage`` object reported for ``reply``."""
    return {
        "input_tokens": reply.input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": reply.output_tokens,
    }


def message_body(reply: Reply, model: str) -> dict[str, Any]:
    """The non-streaming response JSON (``type: message``) for ``reply``."""
    return {
        "id": reply.message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [_complete_block(block) for block in reply.blocks],
        "stop_reason": reply.stop_reason,
        "stop_sequence": None,
        "usage": usage(reply),
    }


def stream_events(reply: Reply, model: str) -> list[WireEvent]:
    """The SSE events of a streaming ``reply``, with ``chunk_ms``/pauses already applied.

    Order: message_start, then per block content_block_start, its deltas and
    content_block_stop, then message_delta and message_stop. A reply with an error after
    its blocks ends with an ``error`` event instead of message_delta/message_stop.
    """
    start = dict(message_body(reply, model), content=[], stop_reason=None)
    start["usage"] = dict(usage(reply), output_tokens=1)
    events = [WireEvent("message_start", {"type": "message_start", "message": start})]
    for index, block in enumerate(reply.blocks):
        events.extend(_block_events(index, block))
    if reply.error is not None:
        events.append(WireEvent("error", error_body(reply.error), reply.tail_ms))
    else:
        delta = {"stop_reason": reply.stop_reason, "stop_sequence": None}
        events.append(
            WireEvent(
                "message_delta",
                {"type": "message_delta", "delta": delta, "usage": usage(reply)},
                reply.tail_ms,
            )
        )
        events.append(WireEvent("message_stop", {"type": "message_stop"}))
    return [
        WireEvent(e.name, e.data, e.pause_ms + (reply.chunk_ms if i else 0))
        for i, e in enumerate(events)
    ]


def _block_events(index: int, block: BlockOut) -> list[WireEvent]:
    """content_block_start, the deltas and content_block_stop of one block."""
    empty: dict[str, Any]
    deltas: list[dict[str, Any]]
    if isinstance(block, TextOut):
        empty = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": c} for c in chunk_text(block.text)]
    elif isinstance(block, ThinkingOut):
        empty = {"type": "thinking", "thinking": "", "signature": ""}
        deltas = [{"type": "thinking_delta", "thinking": c} for c in chunk_text(block.thinking)]
        deltas.append({"type": "signature_delta", "signature": block.signature})
    else:
        empty = {"type": "tool_use", "id": block.id, "name": block.name, "input": {}}
        deltas = [
            {"type": "input_json_delta", "partial_json": c}
            for c in _json_chunks(json.dumps(block.input))
        ]
    events = [
        WireEvent(
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": empty},
            block.pause_ms,
        )
    ]
    events.extend(
        WireEvent(
            "content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}
        )
        for d in deltas
    )
    events.append(WireEvent("content_block_stop", {"type": "content_block_stop", "index": index}))
    return events


def _json_chunks(raw: str) -> list[str]:
    """Split serialized tool input into a few pieces, as the API streams it."""
    size = max(8, math.ceil(len(raw) / 8))
    return [raw[i : i + size] for i in range(0, len(raw), size)]


def _complete_block(block: BlockOut) -> dict[str, Any]:
    """The finished JSON form of a content block (non-streaming responses)."""
    if isinstance(block, TextOut):
        return {"type": "text", "text": block.text}
    if isinstance(block, ThinkingOut):
        return {"type": "thinking", "thinking": block.thinking, "signature": block.signature}
    assert isinstance(block, ToolUseOut)
    return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
