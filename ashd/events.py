"""Turn a raw SDK message into what Ash emits for it (pure functions, no I/O).

Three views of the same message, all following Ash's ``classifyToStreamEvents``:
- ``stream_events``: the SSE events, granular ones first and then always ``message``;
- ``timeline_events``: rows for ``GET /api/sessions/:id/events``;
- ``stored_message``: the row for ``GET /api/sessions/:id/messages`` (assistant and result
  messages verbatim; partial stream events are not stored).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import ujson


def compact_json(value: Any) -> str:
    """One line of JSON as ashd writes it everywhere: UTF-8 as is, ``/`` unescaped."""
    return str(ujson.dumps(value, ensure_ascii=False, escape_forward_slashes=False))


@dataclass(frozen=True)
class SSEEvent:
    """One server-sent event: ``event: name`` + one line of JSON data."""

    name: str
    data: dict[str, Any] = field(hash=False)

    def json(self) -> str:
        return compact_json(self.data)

    def encode(self, event_id: int | None = None) -> bytes:
        return frame(self.name, self.json(), event_id)


def frame(name: str, data_json: str, event_id: int | None = None) -> bytes:
    """One SSE frame; the ``id:`` line lets a client resume with Last-Event-ID."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {data_json}\n\n".encode()


def stream_events(raw: dict[str, Any]) -> list[SSEEvent]:
    """Ash's SSE events for one raw SDK message, ending with the ``message`` event."""
    kind = raw.get("type")
    out: list[SSEEvent] = []
    if kind == "stream_event":
        out.extend(_delta_events(raw.get("event") or {}))
    elif kind == "assistant":
        out.extend(_assistant_events(_content(raw)))
    elif kind == "user":
        out.extend(_tool_result_events(raw))
    elif kind == "result":
        out.append(SSEEvent("turn_complete", {"numTurns": raw.get("num_turns"), "result": raw.get("result")}))
    out.append(SSEEvent("message", raw))
    return out


def _content(raw: dict[str, Any]) -> list[dict[str, Any]]:
    content = (raw.get("message") or {}).get("content")
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def _delta_events(event: dict[str, Any]) -> list[SSEEvent]:
    if event.get("type") != "content_block_delta":
        return []
    delta = event.get("delta") or {}
    kind = delta.get("type")
    if kind == "text_delta":
        return [SSEEvent("text_delta", {"delta": delta.get("text", "")})]
    if kind == "thinking_delta":
        return [SSEEvent("thinking_delta", {"delta": delta.get("thinking", "")})]
    if isinstance(kind, str):
        return [SSEEvent(kind, dict(delta))]
    return []


def _assistant_events(blocks: list[dict[str, Any]]) -> list[SSEEvent]:
    out: list[SSEEvent] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "tool_use":
            data = {"id": block.get("id"), "name": block.get("name"), "input": block.get("input")}
            out.append(SSEEvent("tool_use", data))
        elif kind == "thinking":
            out.append(SSEEvent("thinking_delta", {"delta": block.get("thinking", "")}))
        elif kind != "text" and isinstance(kind, str):
            out.append(SSEEvent(kind, dict(block)))
    return out


def _tool_result_events(raw: dict[str, Any]) -> list[SSEEvent]:
    if "tool_use_result" not in raw:
        return []
    result = raw.get("tool_use_result")
    stdout = result.get("stdout") if isinstance(result, dict) else None
    out: list[SSEEvent] = []
    for block in _content(raw):
        if block.get("type") == "tool_result":
            content = stdout if stdout is not None else block.get("content")
            out.append(SSEEvent("tool_result", {
                "tool_use_id": block.get("tool_use_id"),
                "content": content,
                "is_error": bool(block.get("is_error", False)),
            }))
    return out


def timeline_events(raw: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Rows for the session timeline (Ash types: text, tool_start, tool_result, reasoning,
    turn_complete, error, lifecycle)."""
    kind = raw.get("type")
    out: list[tuple[str, dict[str, Any]]] = []
    if kind == "assistant":
        for block in _content(raw):
            btype = block.get("type")
            if btype == "text":
                out.append(("text", {"content": block.get("text", "")}))
            elif btype == "thinking":
                out.append(("reasoning", {"content": block.get("thinking", "")}))
            elif btype == "tool_use":
                data = {"toolUseId": block.get("id"), "toolName": block.get("name"), "input": block.get("input")}
                out.append(("tool_start", data))
    elif kind == "user":
        for ev in _tool_result_events(raw):
            out.append(("tool_result", {
                "toolUseId": ev.data["tool_use_id"], "content": ev.data["content"], "isError": ev.data["is_error"],
            }))
    elif kind == "result":
        out.append(("turn_complete", {
            "numTurns": raw.get("num_turns"), "result": raw.get("result"),
            "isError": bool(raw.get("is_error")), "subtype": raw.get("subtype"),
        }))
    return out


MESSAGE_TYPES = ("user", "assistant", "result")


def stored_message(raw: dict[str, Any]) -> tuple[str, str] | None:
    """(role, JSON content) for the messages table, or None if Ash does not store it.

    Like Ash, the SDK's ``result`` message is stored with role ``assistant`` (Ash clients
    accept only ``user`` and ``assistant``); :func:`message_type` tells the two apart.
    """
    if raw.get("type") in ("assistant", "result"):
        return "assistant", compact_json(raw)
    return None


def message_type(role: str, content: str) -> str:
    """What a stored message is: ``user``, ``assistant`` (a reply) or ``result`` (the turn's
    summary, which repeats the reply's text). The content's ``type``, else the role."""
    try:
        kind = ujson.loads(content).get("type")
    except (ValueError, AttributeError):
        return role
    return kind if kind in MESSAGE_TYPES else role


def user_message(content: str | list[dict[str, Any]]) -> str:
    """The stored form of the user's prompt (Ash: ``{"type":"user","content":...}``)."""
    return compact_json({"type": "user", "content": content})
