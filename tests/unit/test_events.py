from __future__ import annotations

import json

from ashd import events


def names(raw: dict) -> list[str]:
    return [e.name for e in events.stream_events(raw)]


def test_text_delta_from_stream_event() -> None:
    delta = {"type": "text_delta", "text": "hi"}
    raw = {"type": "stream_event", "event": {"type": "content_block_delta", "delta": delta}}
    out = events.stream_events(raw)
    assert [(e.name, e.data) for e in out] == [("text_delta", {"delta": "hi"}), ("message", raw)]


def test_other_deltas_are_named_after_their_type() -> None:
    delta = {"type": "input_json_delta", "partial_json": "{"}
    raw = {"type": "stream_event", "event": {"type": "content_block_delta", "delta": delta}}
    assert events.stream_events(raw)[0].data == delta and names(raw)[0] == "input_json_delta"
    assert names({"type": "stream_event", "event": {"type": "message_stop"}}) == ["message"]


def test_assistant_blocks() -> None:
    raw = {"type": "assistant", "message": {"content": [
        {"type": "text", "text": "no delta for me"},
        {"type": "thinking", "thinking": "hmm"},
        {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls"}},
    ]}}
    out = events.stream_events(raw)
    assert [e.name for e in out] == ["thinking_delta", "tool_use", "message"]
    assert out[1].data == {"id": "t1", "name": "Bash", "input": {"command": "ls"}}
    assert events.stored_message(raw) == ("assistant", json.dumps(raw, separators=(",", ":")))
    assert [t for t, _ in events.timeline_events(raw)] == ["text", "reasoning", "tool_start"]


def test_tool_result_prefers_stdout() -> None:
    raw = {"type": "user", "tool_use_result": {"stdout": "out", "stderr": ""},
           "message": {"content": [{"type": "tool_result", "tool_use_id": "t1", "content": "x", "is_error": False}]}}
    assert events.stream_events(raw)[0].data == {"tool_use_id": "t1", "content": "out", "is_error": False}
    assert names({"type": "user", "message": {"content": "plain prompt"}}) == ["message"]
    assert events.stored_message({"type": "user"}) is None


def test_message_type_tells_a_result_from_a_reply() -> None:
    result = {"type": "result", "result": "ok"}
    role, content = events.stored_message(result) or ("", "")
    assert (role, events.message_type(role, content)) == ("assistant", "result")  # Ash's role, its own type
    assert events.message_type("assistant", json.dumps({"type": "assistant", "message": {}})) == "assistant"
    assert events.message_type("user", events.user_message("hi")) == "user"
    for odd in ("not json", "[1]", json.dumps({"type": "system"})):
        assert events.message_type("assistant", odd) == "assistant"


def test_result_is_turn_complete() -> None:
    raw = {"type": "result", "num_turns": 2, "result": "done!", "is_error": False}
    out = events.stream_events(raw)
    assert (out[0].name, out[0].data) == ("turn_complete", {"numTurns": 2, "result": "done!"})


def test_sse_encoding_is_one_line_of_json() -> None:
    frame = events.SSEEvent("text_delta", {"delta": "a\nb/c"}).encode()
    assert frame == b'event: text_delta\ndata: {"delta":"a\\nb/c"}\n\n'
