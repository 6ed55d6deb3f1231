"""Planning the reply to a request (pure)."""

from __future__ import annotations

import json
from typing import Any

from ashd.scripted.planner import ModelSettings, plan_reply
from ashd.scripted.reply import ErrorOut, TextOut, ThinkingOut, ToolUseOut
from ashd.scripted.script import ScriptEntry

SETTINGS = ModelSettings(input_tokens=11, output_tokens=7)


def body(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"model": "m", "stream": True, "messages": list(messages)} | extra


def prompt(value: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": value}]}


def tool_use(reply_blocks: tuple[Any, ...]) -> dict[str, Any]:
    block = reply_blocks[-1]
    return {"role": "assistant", "content": [{"type": "tool_use", "id": block.id, "name": "Bash"}]}


def tool_result(tool_id: str, content: str) -> dict[str, Any]:
    result = {"type": "tool_result", "tool_use_id": tool_id, "content": content}
    return {"role": "user", "content": [result]}


def test_no_directive_echoes_the_prompt() -> None:
    reply = plan_reply(body(prompt("x" * 300)), SETTINGS)
    assert reply.blocks == (TextOut("ok: " + "x" * 200),)
    assert (reply.stop_reason, reply.input_tokens, reply.output_tokens) == ("end_turn", 11, 7)


def test_tool_round_trips_walk_the_directive_sequence() -> None:
    first = prompt("[[think: plan]] [[bash: echo 1]] [[say: middle]] [[bash: echo 2]]")
    r0 = plan_reply(body(first), SETTINGS)
    assert isinstance(r0.blocks[0], ThinkingOut)
    assert isinstance(r0.blocks[1], ToolUseOut)
    assert r0.blocks[1].input == {"command": "echo 1", "description": "scripted"}
    assert r0.stop_reason == "tool_use"

    msgs = [first, tool_use(r0.blocks), tool_result(r0.blocks[1].id, "one")]
    r1 = plan_reply(body(*msgs), SETTINGS)
    assert r1.blocks[0] == TextOut("middle")
    assert isinstance(r1.blocks[1], ToolUseOut)
    assert r1.blocks[1].id != r0.blocks[1].id

    msgs += [tool_use(r1.blocks), tool_result(r1.blocks[1].id, "two " * 600)]
    r2 = plan_reply(body(*msgs), SETTINGS)
    assert r2.blocks == (TextOut("tool said: " + ("two " * 600)[:2000]),)
    assert r2.stop_reason == "end_turn"


def test_text_after_the_last_tool_replaces_the_echo() -> None:
    first = prompt("[[bash: ls]] [[say: finished]]")
    (call,) = plan_reply(body(first), SETTINGS).blocks
    assert isinstance(call, ToolUseOut)
    msgs = [first, tool_use((call,)), tool_result(call.id, "files")]
    assert plan_reply(body(*msgs), SETTINGS).blocks == (TextOut("finished"),)


def test_same_request_gives_the_same_reply() -> None:
    request = body(prompt("[[bash: ls]]"))
    assert plan_reply(request, SETTINGS) == plan_reply(json.loads(json.dumps(request)), SETTINGS)


def test_echo_history_lists_every_prompt() -> None:
    msgs = [
        prompt("first prompt"),
        {"role": "assistant", "content": "ok"},
        prompt("[[echo-history]]"),
    ]
    reply = plan_reply(body(*msgs), SETTINGS)
    assert reply.blocks == (TextOut("history: first prompt | [[echo-history]]"),)


def test_echo_system_shows_the_system_prompt_as_a_string_or_blocks() -> None:
    blocks = [{"type": "text", "text": "billing"}, {"type": "text", "text": "You are version 2."}]
    reply = plan_reply(body(prompt("[[echo-system]]"), system=blocks), SETTINGS)
    assert reply.blocks == (TextOut("system: billing | You are version 2."),)
    reply = plan_reply(body(prompt("[[echo-system]]"), system="plain"), SETTINGS)
    assert reply.blocks == (TextOut("system: plain"),)
    assert plan_reply(body(prompt("[[echo-system]]")), SETTINGS).blocks == (TextOut("system: "),)


def test_error_alone_is_an_http_error_after_the_leading_sleep() -> None:
    reply = plan_reply(body(prompt("[[sleep: 30]] [[error: 529 busy]]")), SETTINGS)
    assert reply.blocks == ()
    assert reply.error == ErrorOut(529, "busy")
    assert reply.error.error_type == "overloaded_error"
    assert reply.delay_ms == 30


def test_error_after_blocks_then_resume() -> None:
    first = prompt("[[say: partial]] [[error: 500]] [[say: resumed]]")
    reply = plan_reply(body(first), SETTINGS)
    assert reply.blocks == (TextOut("partial"),)
    assert reply.error == ErrorOut(500, "scripted error")
    assert not reply.is_http_error(stream=True)
    assert reply.is_http_error(stream=False)
    resume = prompt("Your response above was cut off mid-stream. Resume directly.")
    after = plan_reply(body(first, {"role": "assistant", "content": "partial"}, resume), SETTINGS)
    assert after.blocks == (TextOut("resumed"),)


def test_stream_only_error_is_skipped_without_streaming() -> None:
    text = "[[error: 529 stream-only busy]] [[say: fallback]]"
    streamed = plan_reply(body(prompt(text)), SETTINGS)
    assert (streamed.blocks, streamed.error) == ((), ErrorOut(529, "busy", None, True))
    assert not streamed.is_http_error(stream=True)
    plain = plan_reply(body(prompt(text), stream=False), SETTINGS)
    assert (plain.blocks, plain.error) == ((TextOut("fallback"),), None)


def test_sleep_positions_and_settings() -> None:
    text = (
        "[[slow: 5]] [[sleep: 10]] [[say: a]] [[sleep: 20]] [[say: b]] [[sleep: 40]] "
        "[[usage: in=1 out=2]]"
    )
    reply = plan_reply(body(prompt(text)), SETTINGS)
    assert reply.delay_ms == 10
    assert reply.blocks == (TextOut("a"), TextOut("b", pause_ms=20))
    assert (reply.tail_ms, reply.chunk_ms) == (40, 5)
    assert (reply.input_tokens, reply.output_tokens) == (1, 2)


def test_title_side_request_gets_a_json_title() -> None:
    schema = {"type": "object", "properties": {"title": {"type": "string"}}}
    fmt = {"type": "json_schema", "schema": schema}
    reply = plan_reply(
        body(prompt("<session>[[error: 500]]</session>"), output_config={"format": fmt}), SETTINGS
    )
    assert reply.error is None
    assert isinstance(reply.blocks[0], TextOut)
    assert json.loads(reply.blocks[0].text) == {"title": "Scripted session"}


def test_bad_directive_is_reported_as_text() -> None:
    reply = plan_reply(body(prompt("[[error: nope]]")), SETTINGS)
    assert isinstance(reply.blocks[0], TextOut)
    assert reply.blocks[0].text.startswith("scripted: bad directive: [[error: nope]]")


def test_script_entries_win_over_prompt_directives() -> None:
    script = (ScriptEntry("deploy", "[[say: deploying]]"), ScriptEntry(None, "plain words"))
    settings = ModelSettings(script=script)
    assert plan_reply(body(prompt("please deploy [[say: x]]")), settings).blocks == (
        TextOut("deploying"),
    )
    assert plan_reply(body(prompt("[[say: x]]")), settings).blocks == (TextOut("plain words"),)
