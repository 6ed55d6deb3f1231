"""Parsing of the directive language (pure)."""

from __future__ import annotations

import pytest

from ashd.scripted.directives import (
    DirectiveError,
    EchoHistory,
    Fail,
    Say,
    Sleep,
    Slow,
    Think,
    ToolCall,
    Usage,
    parse_directives,
    split_responses,
)


def test_every_directive_kind_in_order() -> None:
    text = (
        "intro [[think: hmm]] [[say: hello world]] [[bash: ls -la]] "
        '[[tool: Write {"file_path": "a.txt", "content": "x"}]] [[error: 529 busy now]] '
        "[[slow: 15]] [[sleep: 200]] [[echo-history]] [[usage: in=7 out=3]] outro"
    )
    assert parse_directives(text) == (
        Think("hmm"),
        Say("hello world"),
        ToolCall("Bash", {"command": "ls -la", "description": "scripted"}),
        ToolCall("Write", {"file_path": "a.txt", "content": "x"}),
        Fail(529, "busy now"),
        Slow(15),
        Sleep(200),
        EchoHistory(),
        Usage(7, 3),
    )


def test_no_directives_and_unknown_names_are_plain_text() -> None:
    assert parse_directives("just a prompt") == ()
    assert parse_directives("[[nope: x]] [[say: kept]]") == (Say("kept"),)


def test_arguments_may_hold_balanced_brackets_and_newlines() -> None:
    found = parse_directives("[[bash: [[ -f x ]] && echo 'a\nb']] [[tool: T {\"a\": [[1], [2]]}]]")
    assert found == (
        ToolCall("Bash", {"command": "[[ -f x ]] && echo 'a\nb'", "description": "scripted"}),
        ToolCall("T", {"a": [[1], [2]]}),
    )


def test_tool_without_input_and_partial_usage() -> None:
    assert parse_directives("[[tool: TodoRead]] [[usage: out=9]]") == (
        ToolCall("TodoRead", {}),
        Usage(None, 9),
    )


def test_unterminated_directive_is_ignored() -> None:
    assert parse_directives("[[say: a]] [[say: never closed") == (Say("a"),)


@pytest.mark.parametrize(
    "text",
    [
        "[[error: abc]]",
        "[[error: 200 fine]]",
        "[[tool: Bash {not json}]]",
        "[[tool: Bash [1, 2]]]",
        "[[slow: fast]]",
        "[[usage: in=x]]",
        "[[say]]",
    ],
)
def test_malformed_known_directive_raises(text: str) -> None:
    with pytest.raises(DirectiveError):
        parse_directives(text)


def test_error_message_is_optional_and_flags_come_first() -> None:
    assert parse_directives("[[error: 403]]") == (Fail(403, ""),)
    assert parse_directives("[[error: 529 retry=false stream-only so busy]]") == (
        Fail(529, "so busy", should_retry=False, stream_only=True),
    )
    assert parse_directives("[[error: 500 retry=true]]") == (Fail(500, "", True),)


def test_split_responses_ends_groups_after_tool_calls_and_errors() -> None:
    say, bash, think = Say("a"), ToolCall("Bash", {}), Think("t")
    fail, stream_fail = Fail(529, "x"), Fail(529, "x", stream_only=True)
    assert split_responses((say, bash, think, bash)) == ((say, bash), (think, bash), ())
    assert split_responses((say, fail, think)) == ((say, fail), (think,))
    assert split_responses((stream_fail, say)) == ((stream_fail, say),)
    assert split_responses(()) == ((),)
    assert split_responses((say,)) == ((say,),)
