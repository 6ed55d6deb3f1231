"""What one scripted model response consists of, before it is put on the wire.

Frozen values produced by :mod:`ashd.scripted.planner` and rendered by
:mod:`ashd.scripted.wire`. Pauses are in milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TextOut:
    """A ``text`` content block, preceded by ``pause_ms`` of silence."""

    text: str
    pause_ms: int = 0


@dataclass(frozen=True)
class ThinkingOut:
    """A ``thinking`` content block with its (opaque, deterministic) signature."""

    thinking: str
    signature: str
    pause_ms: int = 0


@dataclass(frozen=True)
class ToolUseOut:
    """A ``tool_use`` content block."""

    id: str
    name: str
    input: dict[str, Any] = field(default_factory=dict)
    pause_ms: int = 0


BlockOut = TextOut | ThinkingOut | ToolUseOut

# Anthropic's error ``type`` for each HTTP status it documents.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


@dataclass(frozen=True)
class ErrorOut:
    """An API error: HTTP status, Anthropic error type and message.

    ``should_retry`` becomes the ``x-should-retry`` header (absent when None);
    ``in_stream`` asks for an SSE ``error`` event even before the first block.
    """

    status: int
    message: str
    should_retry: bool | None = None
    in_stream: bool = False

    @property
    def error_type(self) -> str:
        """Anthropic's error type for :attr:`status` (``api_error`` for other 5xx)."""
        default = "api_error" if self.status >= 500 else "invalid_request_error"
        return ERROR_TYPES.get(self.status, default)


@dataclass(frozen=True)
class Reply:
    """One complete model response.

    ``delay_ms`` passes before anything is sent; ``chunk_ms`` between streamed events;
    ``tail_ms`` after the last block. With ``error`` set, a streaming response sends its
    blocks and then an SSE ``error`` event, unless there are no blocks and the error is
    not ``in_stream``: then, as for every non-streaming request, it is an HTTP error.
    """

    message_id: str
    blocks: tuple[BlockOut, ...]
    input_tokens: int
    output_tokens: int
    delay_ms: int = 0
    chunk_ms: int = 0
    tail_ms: int = 0
    error: ErrorOut | None = None

    @property
    def stop_reason(self) -> str:
        """``tool_use`` when the last block is a tool call, else ``end_turn``."""
        last = self.blocks[-1] if self.blocks else None
        return "tool_use" if isinstance(last, ToolUseOut) else "end_turn"

    def is_http_error(self, stream: bool) -> bool:
        """True when the response must be an HTTP error status rather than a 200."""
        if self.error is None:
            return False
        return not stream or (not self.blocks and not self.error.in_stream)
