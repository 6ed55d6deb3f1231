"""Terminal rendering: streamed turns, tables and stored messages."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from ashd.client.display import NdjsonPrinter, StreamPrinter, make_printer, same_file
from ashd.client.formatting import format_table, message_line, message_text, one_line, sentence_case
from ashd.client.sse import SSEEvent


def render(events: list[tuple[str, Any]], **options: Any) -> tuple[str, str, bool]:
    out, err = io.StringIO(), io.StringIO()
    printer = StreamPrinter(out, err, **options)
    for name, data in events:
        printer.handle(SSEEvent(name, data))
    printer.finish()
    return out.getvalue(), err.getvalue(), printer.failed


def assistant(*texts: str) -> dict[str, Any]:
    blocks = [{"type": "text", "text": t} for t in texts]
    return {"type": "assistant", "message": {"content": blocks}}


def test_deltas_go_to_stdout_and_the_turn_ends_with_a_newline() -> None:
    out, err, failed = render([
        ("session_start", {"sessionId": "s1"}),
        ("text_delta", {"delta": "Hel"}), ("text_delta", {"delta": "lo"}),
        ("message", assistant("Hello")),  # already shown through its deltas
        ("turn_complete", {"numTurns": 1, "result": "Hello"}),
        ("done", {"sessionId": "s1"}),
    ])
    assert (out, err, failed) == ("Hello\n", "", False)


def test_without_deltas_assistant_text_blocks_are_printed() -> None:
    out, _, _ = render([("message", assistant("Hi", " there")), ("done", {})])
    assert out == "Hi there\n"


def test_fallback_is_per_assistant_message() -> None:
    out, _, _ = render([
        ("text_delta", {"delta": "streamed"}), ("message", assistant("streamed")),
        ("message", assistant("unstreamed")),
    ])
    assert out == "streamedunstreamed\n"


def test_turn_result_is_the_last_resort() -> None:
    out, _, _ = render([("turn_complete", {"numTurns": 1, "result": "42"})])
    assert out == "42\n"


def test_tool_calls_and_results_are_compact_lines_on_stderr() -> None:
    out, err, _ = render([
        ("text_delta", {"delta": "Let me check."}),
        ("tool_use", {"id": "t1", "name": "Bash", "input": {"command": "echo hi\n&& ls"}}),
        ("tool_result", {"tool_use_id": "t1", "content": "hi\n" + "x" * 300, "is_error": False}),
        ("tool_use", {"id": "t2", "name": "Custom", "input": {"a": 1}}),
        ("tool_result", {"tool_use_id": "t2",
                         "content": [{"type": "text", "text": "no such file"}],
                         "is_error": True}),
        ("text_delta", {"delta": "Done."}),
    ])
    lines = err.splitlines()
    assert lines[0] == "[tool] Bash: echo hi && ls"
    assert lines[1].startswith("[result] hi xxx") and lines[1].endswith("…")
    assert len(lines[1]) == len("[result] ") + 100
    assert lines[2:] == ['[tool] Custom: {"a": 1}', "[result error] no such file"]
    assert out == "Let me check.\nDone.\n"  # text blocks around a tool call stay apart


def test_on_a_terminal_a_stderr_line_first_ends_the_stdout_line() -> None:
    buffer = io.StringIO()  # one buffer stands for the shared terminal
    printer = StreamPrinter(buffer, buffer, interleaved=True)
    for name, data in [("text_delta", {"delta": "Checking"}),
                       ("tool_use", {"name": "Bash", "input": {"command": "ls"}}),
                       ("text_delta", {"delta": "Done"})]:
        printer.handle(SSEEvent(name, data))
    printer.finish()
    assert buffer.getvalue() == "Checking\n[tool] Bash: ls\nDone\n"


def test_thinking_is_hidden_unless_asked_and_dimmed_with_color() -> None:
    events = [("thinking_delta", {"delta": "hmm"}), ("text_delta", {"delta": "A"})]
    assert render(events)[:2] == ("A\n", "")
    assert render(events, show_thinking=True)[:2] == ("A\n", "hmm\n")
    assert render(events, show_thinking=True, color=True)[1] == "\x1b[2mhmm\x1b[0m\n"


def test_error_event_marks_the_turn_failed() -> None:
    out, err, failed = render([("text_delta", {"delta": "par"}), ("error", {"error": "boom"}),
                               ("done", {})])
    assert (out, err, failed) == ("par\n", "error: boom\n", True)


def test_unknown_events_are_ignored() -> None:
    assert render([("input_json_delta", {"partial_json": "{"}), ("message", "not json")]) == (
        "", "", False)


def test_ndjson_printer_writes_one_object_per_event() -> None:
    out = io.StringIO()
    printer = NdjsonPrinter(out)
    printer.handle(SSEEvent("text_delta", {"delta": "é"}, "3"))
    printer.handle(SSEEvent("error", {"error": "x"}))
    assert [json.loads(line) for line in out.getvalue().splitlines()] == [
        {"event": "text_delta", "data": {"delta": "é"}, "id": "3"},
        {"event": "error", "data": {"error": "x"}, "id": None},
    ]
    assert printer.failed


def test_format_table_aligns_columns() -> None:
    table = format_table(("ID", "AGENT", "STATUS"), [("s-1", "bot", "active"),
                                                      ("s-22", None, "")])
    assert table == "ID    AGENT  STATUS\ns-1   bot    active\ns-22  -      -"


def test_message_text_reads_stored_messages() -> None:
    assert message_text(json.dumps({"type": "user", "content": "hi"})) == "hi"
    assert message_text(json.dumps(assistant("a", "b"))) == "a\nb"
    assert message_text(json.dumps({"type": "result", "result": "ok"})) == "ok"
    assert message_text("plain") == "plain"


def test_message_lines_show_the_reply_once_and_the_result_as_its_outcome() -> None:
    result = {"type": "result", "subtype": "success", "result": "ok: hi", "num_turns": 1,
              "duration_ms": 420, "total_cost_usd": 0.0012, "is_error": False}
    rows = [{"sequence": 1, "role": "user", "content": json.dumps({"type": "user", "content": "hi"})},
            {"sequence": 2, "role": "assistant", "content": json.dumps(assistant("ok: hi"))},
            {"sequence": 3, "role": "assistant", "content": json.dumps(result)}]  # no "type": an older server
    assert [message_line(m) for m in rows] == [
        "#1 user: hi", "#2 assistant: ok: hi", "#3 result: done (1 turn, 0.4 s, $0.0012)"]
    failed = {**result, "is_error": True, "subtype": "error_max_turns", "num_turns": 3}
    assert message_line({"sequence": 9, "role": "assistant", "type": "result",
                         "content": json.dumps(failed)}) == "#9 result: failed: error_max_turns"
    assert message_line({"sequence": 4, "role": "user", "content": "not json"}) == "#4 user: not json"


def test_one_line_collapses_whitespace() -> None:
    assert one_line(" a\n\tb  ") == "a b"
    assert one_line("abcdef", limit=4) == "abc…"


def test_thinking_streamed_as_deltas_is_not_repeated_from_the_assistant_block() -> None:
    partial = {"type": "stream_event", "event": {"type": "content_block_delta"}}
    thinking_block = {"type": "assistant",
                      "message": {"content": [{"type": "thinking", "thinking": "hmm ok"}]}}
    events = [
        ("thinking_delta", {"delta": "hmm"}), ("message", partial),
        ("thinking_delta", {"delta": " ok"}), ("message", partial),
        ("thinking_delta", {"delta": "hmm ok"}), ("message", thinking_block),  # whole again
        ("text_delta", {"delta": "A"}), ("message", partial),
    ]
    assert render(events, show_thinking=True)[:2] == ("A\n", "hmm ok\n")


def test_thinking_without_partials_is_shown_once_in_order() -> None:
    thinking_block = {"type": "assistant", "message": {"content": [
        {"type": "thinking", "thinking": "plan"}, {"type": "tool_use", "name": "Bash"}]}}
    events = [("thinking_delta", {"delta": "plan"}),
              ("tool_use", {"name": "Bash", "input": {"command": "ls"}}),
              ("message", thinking_block)]
    assert render(events, show_thinking=True)[1] == "plan\n[tool] Bash: ls\n"


def test_result_with_is_error_fails_the_turn() -> None:
    result = {"type": "result", "subtype": "success", "is_error": True,
              "result": "API Error: 400 bad request"}
    out, err, failed = render([("turn_complete", {"result": result["result"]}),
                               ("message", result)])
    assert (out, err, failed) == ("API Error: 400 bad request\n",
                                  "error: the turn failed: API Error: 400 bad request\n", True)
    assert render([("message", {**result, "subtype": "error_max_turns"})])[1] == (
        "error: the turn failed: error_max_turns\n")
    ndjson = NdjsonPrinter(io.StringIO())
    ndjson.handle(SSEEvent("message", result))
    assert ndjson.failed


def test_printer_interleaves_only_when_both_streams_reach_one_file(tmp_path: Path) -> None:
    path = tmp_path / "log"
    with path.open("w") as out, path.open("a") as err, (tmp_path / "other").open("w") as other:
        assert same_file(out, err) and not same_file(out, other)
        printer = make_printer(out, err, as_json=False, show_thinking=False, no_color=False)
        assert isinstance(printer, StreamPrinter) and printer.interleaved and not printer.color
    assert not same_file(io.StringIO(), io.StringIO())
    assert isinstance(make_printer(io.StringIO(), io.StringIO(), as_json=True,
                                   show_thinking=False, no_color=True), NdjsonPrinter)


def test_sentence_case_lowers_only_a_capitalised_word() -> None:
    assert sentence_case('Agent "x" not found') == 'agent "x" not found'
    assert sentence_case("API key missing") == "API key missing"
    assert sentence_case("x") == "x"
