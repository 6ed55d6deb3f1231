"""Rendering replies as Anthropic SSE events and JSON (pure), and script files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ashd.scripted.reply import ErrorOut, Reply, TextOut, ThinkingOut, ToolUseOut
from ashd.scripted.script import ScriptEntry, ScriptError, find_reply, load_script
from ashd.scripted.wire import (
    MAX_CHUNKS,
    chunk_text,
    encode_event,
    error_body,
    message_body,
    stream_events,
)


def reply(
    *blocks: TextOut | ThinkingOut | ToolUseOut,
    delay_ms: int = 0,
    chunk_ms: int = 0,
    tail_ms: int = 0,
    error: ErrorOut | None = None,
) -> Reply:
    return Reply(
        "msg_1",
        tuple(blocks),
        input_tokens=5,
        output_tokens=3,
        delay_ms=delay_ms,
        chunk_ms=chunk_ms,
        tail_ms=tail_ms,
        error=error,
    )


def test_chunks_are_word_ish_and_lossless() -> None:
    assert chunk_text("hello big world") == ["hello ", "big ", "world"]
    long = "word " * 1000
    chunks = chunk_text(long)
    assert "".join(chunks) == long
    assert 1 < len(chunks) <= MAX_CHUNKS
    assert chunk_text("") == [""]


def test_event_order_for_thinking_text_and_tool() -> None:
    tool = ToolUseOut("toolu_1", "Bash", {"command": "echo " + "x" * 80})
    events = stream_events(reply(ThinkingOut("a b", "sig"), TextOut("c d"), tool), "m")
    names = [e.name for e in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    starts = [e.data["content_block"]["type"] for e in events if e.name == "content_block_start"]
    assert starts == ["thinking", "text", "tool_use"]
    deltas = [e.data["delta"] for e in events if e.name == "content_block_delta"]
    assert [d["type"] for d in deltas[:3]] == [
        "thinking_delta",
        "thinking_delta",
        "signature_delta",
    ]
    partial = "".join(d["partial_json"] for d in deltas if d["type"] == "input_json_delta")
    assert json.loads(partial) == tool.input
    assert events[-2].data["delta"]["stop_reason"] == "tool_use"
    assert events[-2].data["usage"]["output_tokens"] == 3
    assert events[0].data["message"]["usage"]["input_tokens"] == 5


def test_pauses_and_chunk_delay() -> None:
    events = stream_events(
        reply(TextOut("a"), TextOut("b", pause_ms=50), delay_ms=9, chunk_ms=2, tail_ms=7), "m"
    )
    assert events[0].pause_ms == 0
    assert all(e.pause_ms >= 2 for e in events[1:])
    second_start = [e for e in events if e.name == "content_block_start"][1]
    assert second_start.pause_ms == 52
    assert next(e for e in events if e.name == "message_delta").pause_ms == 9


def test_error_after_blocks_ends_the_stream_with_an_error_event() -> None:
    events = stream_events(reply(TextOut("a"), error=ErrorOut(529, "busy")), "m")
    assert events[-1].name == "error"
    assert events[-1].data == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "busy"},
    }
    assert "message_stop" not in [e.name for e in events]


def test_encode_event_framing() -> None:
    raw = encode_event(stream_events(reply(TextOut("a")), "m")[-1])
    assert raw == b'event: message_stop\ndata: {"type": "message_stop"}\n\n'


def test_non_streaming_body_and_error_types() -> None:
    body = message_body(reply(TextOut("a"), ThinkingOut("t", "s")), "model-x")
    assert body["content"] == [
        {"type": "text", "text": "a"},
        {"type": "thinking", "thinking": "t", "signature": "s"},
    ]
    assert (body["model"], body["stop_reason"], body["type"]) == ("model-x", "end_turn", "message")
    assert error_body(ErrorOut(401, "k"))["error"]["type"] == "authentication_error"
    assert error_body(ErrorOut(503, "k"))["error"]["type"] == "api_error"
    assert error_body(ErrorOut(418, "k"))["error"]["type"] == "invalid_request_error"


def test_script_file_loading_and_first_match(tmp_path: Path) -> None:
    path = tmp_path / "script.json"
    path.write_text(
        json.dumps(
            [{"match": "hello", "reply": "[[say: hi]]"}, {"match": None, "reply": "fallback"}]
        )
    )
    entries = load_script(path)
    assert entries == (ScriptEntry("hello", "[[say: hi]]"), ScriptEntry(None, "fallback"))
    assert find_reply(entries, "well hello there") == "[[say: hi]]"
    assert find_reply(entries, "bye") == "fallback"
    assert find_reply(entries[:1], "bye") is None


@pytest.mark.parametrize("content", ["{}", '[{"match": 1, "reply": "x"}]', "[{}]", "not json"])
def test_bad_script_files_name_the_problem(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ScriptError, match=r"bad\.json"):
        load_script(path)
