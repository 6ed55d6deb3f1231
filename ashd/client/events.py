"""Typed stream events: one frozen class per Ash SSE event name.

Every class is an :class:`~ashd.client.sse.SSEEvent` (raw ``event`` name, ``data`` and
stream ``id`` of the frame it was built from, so code written against it keeps working) and
adds typed fields read from ``data``. Unknown event names become :class:`StreamEvent`
itself; a field the server left out gets its documented default, never a KeyError::

    for event in client.send_message(session_id, "Hi"):
        match event:
            case TextDelta(delta=text):
                print(text, end="")
            case ToolUse(name=tool):
                print(f"\\n[{tool}]")
            case Done():
                break

Pure code: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ashd.client.sse import SSEEvent


@dataclass(frozen=True)
class StreamEvent(SSEEvent):
    """Any event; the base of every typed event and the type of unknown ones."""

    @property
    def seq(self) -> int | None:
        """The frame's id as an integer (ashd's per-session sequence), if it has one."""
        try:
            return int(self.id) if self.id is not None else None
        except ValueError:
            return None


@dataclass(frozen=True)
class SessionStart(StreamEvent):
    session_id: str = ""
    version: str = ""


@dataclass(frozen=True)
class TextDelta(StreamEvent):
    delta: str = ""


@dataclass(frozen=True)
class ThinkingDelta(StreamEvent):
    delta: str = ""


@dataclass(frozen=True)
class ToolUse(StreamEvent):
    tool_use_id: str = ""
    name: str = ""
    input: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ToolResult(StreamEvent):
    tool_use_id: str = ""
    content: Any = None
    is_error: bool = False


@dataclass(frozen=True)
class TurnComplete(StreamEvent):
    num_turns: int | None = None
    result: str | None = None


@dataclass(frozen=True)
class Message(StreamEvent):
    """The raw SDK message (``data``): ``type`` is assistant, user, result, system, ..."""

    type: str = ""


@dataclass(frozen=True)
class Error(StreamEvent):
    error: str = ""


@dataclass(frozen=True)
class Done(StreamEvent):
    session_id: str = ""


def _fields(name: str, d: dict[str, Any]) -> tuple[type[StreamEvent], dict[str, Any]]:
    def text(key: str) -> str:
        return str(d.get(key) or "")

    if name == "session_start":
        return SessionStart, {"session_id": text("sessionId"), "version": text("version")}
    if name in ("text_delta", "thinking_delta"):
        return (TextDelta if name == "text_delta" else ThinkingDelta), {"delta": text("delta")}
    if name == "tool_use":
        given = d.get("input")
        return ToolUse, {"tool_use_id": text("id"), "name": text("name"),
                         "input": given if isinstance(given, dict) else {}}
    if name == "tool_result":
        return ToolResult, {"tool_use_id": text("tool_use_id"), "content": d.get("content"),
                            "is_error": bool(d.get("is_error"))}
    if name == "turn_complete":
        turns = d.get("numTurns")
        result = d.get("result")
        return TurnComplete, {"num_turns": turns if isinstance(turns, int) else None,
                              "result": result if isinstance(result, str) else None}
    if name == "message":
        return Message, {"type": text("type")}
    if name == "error":
        return Error, {"error": text("error")}
    if name == "done":
        return Done, {"session_id": text("sessionId")}
    return StreamEvent, {}


def typed(raw: SSEEvent) -> StreamEvent:
    """The typed event for one parsed SSE frame."""
    data = raw.data if isinstance(raw.data, dict) else {}
    cls, extra = _fields(raw.event, data)
    return cls(raw.event, raw.data, raw.id, **extra)
