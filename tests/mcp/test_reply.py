"""The reply ``send_message`` returns, gathered from a turn's events."""

from __future__ import annotations

from typing import Any

from ashd.client.events import StreamEvent, typed
from ashd.client.sse import SSEEvent
from ashd.mcp.reply import Reply


def event(kind: str, **data: Any) -> StreamEvent:
    return typed(SSEEvent(kind, data, None))


def assistant(text: str) -> StreamEvent:
    return event("message", type="assistant", message={"content": [{"type": "text", "text": text}]})


def reply_of(*events: StreamEvent) -> Reply:
    reply = Reply()
    for one in events:
        reply.add(one)
    return reply


def test_streamed_deltas_are_the_reply_and_the_assistant_message_is_not_counted_twice() -> None:
    reply = reply_of(event("text_delta", delta="hello "), event("text_delta", delta="world"),
                     assistant("hello world"), event("turn_complete", result="hello world", numTurns=1),
                     event("done"))
    assert reply.text == "hello world" and reply.failure is None


def test_without_partials_every_assistant_message_counts() -> None:
    reply = reply_of(assistant("first. "), event("tool_use", name="Bash", input={}), assistant("second."))
    assert reply.text == "first. second."


def test_the_result_is_the_last_resort() -> None:
    assert reply_of(event("turn_complete", result="from the result")).text == "from the result"


def test_an_error_event_fails_the_turn_and_keeps_the_text_so_far() -> None:
    reply = reply_of(event("text_delta", delta="partial"), event("error", error="sandbox died"))
    assert reply.failure == "sandbox died" and reply.text == "partial"


def test_an_error_result_fails_the_turn() -> None:
    reply = reply_of(event("message", type="result", is_error=True, subtype="error_max_turns"))
    assert reply.failure == "the turn failed: error_max_turns"
