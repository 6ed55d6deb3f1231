"""Reading prompts and tool results out of CLI-shaped request messages (pure)."""

from __future__ import annotations

from typing import Any

from ashd.scripted.conversation import ToolResult, is_title_request, read_conversation

REMINDER = "<system-reminder>\nAttribution for git commits...\n</system-reminder>\n"


def user(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": list(blocks)}


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def result(tool_id: str, content: Any, is_error: bool = False) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": tool_id, "content": content, "is_error": is_error}


ENV = {"role": "system", "content": [text("# Environment\n - Primary working directory: /w")]}
TOOL_USE = {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Bash"}]}


def test_first_turn_skips_reminder_and_system_message() -> None:
    conv = read_conversation([user(text(REMINDER), text("[[say: hi]]")), ENV])
    assert conv.prompt == "[[say: hi]]"
    assert conv.history == ("[[say: hi]]",)
    assert conv.round_trips == 0
    assert conv.last_result is None


def test_string_content_and_history_in_order() -> None:
    messages = [
        user(text(REMINDER), text("first")),
        ENV,
        {"role": "assistant", "content": [text("ok")]},
        {"role": "user", "content": "second"},
    ]
    conv = read_conversation(messages)
    assert conv.prompt == "second"
    assert conv.history == ("first", "second")


def test_tool_results_count_round_trips_since_the_prompt() -> None:
    messages = [
        user(text("[[bash: a]] [[bash: b]]")),
        TOOL_USE,
        user(result("t1", "out-a")),
        TOOL_USE,
        user(result("t2", [text("out-b"), {"type": "image", "source": {}}], is_error=True)),
    ]
    conv = read_conversation(messages)
    assert conv.prompt == "[[bash: a]] [[bash: b]]"
    assert conv.round_trips == 2
    assert conv.last_result == ToolResult("t2", "out-b", True)


def test_new_prompt_resets_round_trips() -> None:
    messages = [user(text("p1")), TOOL_USE, user(result("t1", "x")), user(text("p2"))]
    conv = read_conversation(messages)
    assert (conv.prompt, conv.round_trips, conv.last_result) == ("p2", 0, None)


def test_merged_prompt_uses_the_last_block_and_drops_interrupt_markers() -> None:
    # The CLI merges a failed prompt with the next one: one text block each.
    messages = [
        user(text(REMINDER), text("[[error: 403 x]]\n"), text("[[say: b]]")),
        user(text("[Request interrupted by user]\n"), text("[[echo-history]]")),
    ]
    conv = read_conversation(messages)
    assert conv.prompt == "[[echo-history]]"
    assert conv.history == ("[[error: 403 x]]", "[[say: b]]", "[[echo-history]]")


def test_resume_request_counts_as_a_round_trip() -> None:
    resume = "Your response above was cut off mid-stream. Resume directly from where it stops."
    messages = [
        user(text("[[say: a]] [[error: 529]] [[say: b]]")),
        {"role": "assistant", "content": [text("a")]},
        user(text(resume)),
    ]
    conv = read_conversation(messages)
    assert (conv.prompt, conv.round_trips, conv.last_result) == (
        "[[say: a]] [[error: 529]] [[say: b]]",
        1,
        None,
    )


def test_garbage_is_an_empty_conversation() -> None:
    for messages in (None, "x", [1, {"role": "user", "content": 5}]):
        conv = read_conversation(messages)
        assert (conv.prompt, conv.history, conv.round_trips) == ("", (), 0)


def test_title_request_detection() -> None:
    schema = {"type": "object", "properties": {"title": {"type": "string"}}}
    body = {
        "output_config": {"effort": "medium", "format": {"type": "json_schema", "schema": schema}}
    }
    assert is_title_request(body)
    assert not is_title_request({"output_config": {"effort": "medium"}})
    assert not is_title_request({})
