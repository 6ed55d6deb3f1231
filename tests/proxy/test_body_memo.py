"""The model proxy's body check with a memo of the sandbox's last body (ashd/proxy/body_memo.py):
what a body repeats of the last one is not parsed again, and every answer is the whole check's."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from ashd.body_policy import BodyPolicy
from ashd.proxy import body_memo
from ashd.proxy.body import BodyRefused, check_body
from ashd.proxy.body_memo import BodyMemo

POLICY = BodyPolicy()
TOOLS = [{"name": "Bash", "description": "run a command", "input_schema": {"type": "object", "properties": {
    "command": {"type": "string"}}}}, {"name": "Read", "description": "read a file", "input_schema": {
        "type": "object"}}]
FILE_SOURCE = {"type": "document", "source": {"type": "file", "file_id": "file_1"}}
WEB_SEARCH = {"type": "web_search_20250305", "name": "web_search"}


def turn(n: int) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "text", "text": f"[[say: turn {n}]]"}]},
            {"role": "assistant", "content": [{"type": "text", "text": f"turn {n}"},
                                              {"type": "tool_use", "id": f"t{n}", "name": "Bash", "input": {}}]}]


def conversation(turns: int, **extra: Any) -> dict[str, Any]:
    """Shaped like the CLI's requests: the history, the new prompt last with a cache marker."""
    messages = [m for n in range(turns) for m in turn(n)]
    messages.append({"role": "user", "content": [{"type": "text", "text": "go on",
                                                  "cache_control": {"type": "ephemeral"}}]})
    body = {"model": "claude-sonnet-4-5", "max_tokens": 32000, "stream": True, "messages": messages,
            "system": [{"type": "text", "text": "You are an agent."}], "tools": TOOLS,
            "metadata": {"user_id": "u1"}}
    body.update(extra)
    return body


def encoded(body: dict[str, Any], indent: int | None = None) -> bytes:
    return json.dumps(body, indent=indent, separators=None if indent else (",", ":")).encode()


def answer(raw: bytes, memo: BodyMemo | None = None) -> str:
    """What the check says: "ok", or the refusal's status and message."""
    try:
        check_body(raw, POLICY, memo)
    except BodyRefused as refused:
        return f"{refused.status} {refused.message}"
    return "ok"


def primed(*bodies: bytes) -> BodyMemo:
    memo = BodyMemo()
    for raw in bodies:
        assert answer(raw, memo) == "ok"
    return memo


def test_a_growing_conversation_parses_only_what_is_new() -> None:
    memo = BodyMemo()
    assert answer(encoded(conversation(3)), memo) == "ok"
    assert memo.skipped == 0
    assert answer(encoded(conversation(4)), memo) == "ok"
    # the 6 messages of turns 0-2 and every top-level value that is an object, array or string
    # (model, system, tools, metadata); the old prompt lost its marker and is parsed again
    assert memo.skipped == 6 + 4
    assert answer(encoded(conversation(5)), memo) == "ok"
    assert memo.skipped == 10 + 8 + 4


def test_pretty_printed_bodies_are_skipped_too() -> None:
    memo = primed(encoded(conversation(3), indent=2))
    assert answer(encoded(conversation(4), indent=2), memo) == "ok"
    assert memo.skipped == 6 + 4


@pytest.mark.parametrize(("name", "body", "says"), [
    ("new message", conversation(4, messages=[*conversation(4)["messages"][:-1], {"role": "user", "content": [
        FILE_SOURCE]}]), "messages[8].content[0].source refers to a file stored with the model provider"),
    ("changed old message", conversation(4, messages=[*conversation(4)["messages"][:3], {
        "role": "assistant", "content": [{"type": "text", "text": "turn 1"}, FILE_SOURCE]},
        *conversation(4)["messages"][4:]]), "messages[3].content[1].source refers to a file"),
    ("tool added", conversation(4, tools=[*TOOLS, WEB_SEARCH]), "tools[2].type 'web_search_20250305'"),
    ("mcp servers", conversation(4, mcp_servers=[{"type": "url", "url": "https://attacker.example"}]),
     "mcp_servers asks the model provider"),
    ("system file", conversation(4, system=[{"type": "text", "text": "You are an agent."}, FILE_SOURCE]),
     "system[1].source refers to a file"),
])
def test_what_a_body_adds_to_the_last_one_is_checked(name: str, body: dict[str, Any], says: str) -> None:
    raw = encoded(body)
    memo = primed(encoded(conversation(3)))
    result = answer(raw, memo)
    assert result.startswith("400 ") and says in result, result
    assert result == answer(raw)
    assert answer(encoded(conversation(4)), memo) == "ok"  # a refusal leaves the memo as it was
    assert memo.skipped == 10


def repeat_after(raw: bytes, key: bytes, value: bytes) -> bytes:
    """``raw`` with ``key`` given again, last, as ``value``."""
    return raw[:-1] + b',"' + key + b'":' + value + b"}"


@pytest.mark.parametrize(("mutate", "says"), [
    (lambda raw: repeat_after(raw, b"mcp_servers", b'[{"type":"url"}]').replace(b"{", b'{"mcp_servers":null,', 1),
     "repeats the key 'mcp_servers'"),
    (lambda raw: repeat_after(raw, b"tools", b"[]"), "repeats the key 'tools'"),
    (lambda raw: raw.replace(b']},{"role"', b']} {"role"', 1), "not valid JSON"),  # no separator after a skip
    (lambda raw: raw.replace(b'"system":[', b'"system":"x" [', 1), "not valid JSON"),
    (lambda raw: raw[:-1], "not valid JSON"),
    (lambda raw: raw + b"{}", "not valid JSON"),
    (lambda raw: b"[" + raw + b"]", "must be a JSON object"),
    (lambda raw: b"\xef\xbb\xbf" + raw, "not valid JSON"),
    (lambda raw: raw.decode().encode("utf-16"), "not UTF-8"),
])
def test_malformed_and_duplicated_bodies_get_the_whole_checks_answer(mutate: Any, says: str) -> None:
    base = encoded(conversation(3))
    raw = mutate(encoded(conversation(4)))
    result = answer(raw, primed(base))
    assert says in result, result
    assert result == answer(raw)


def test_a_number_is_always_parsed_again() -> None:
    """``1`` could go on as ``12``: only objects, arrays and strings end where their own text says."""
    memo = primed(b'{"max_tokens":1,"container":""}')
    assert "container asks" in answer(b'{"max_tokens":12,"container":"x"}', memo)
    assert memo.skipped == 0


def test_a_body_over_the_memo_cap_is_not_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    memo = primed(encoded(conversation(3)))
    big = encoded(conversation(40))
    monkeypatch.setattr(body_memo, "MEMO_MAX_CHARS", len(big) - 1)
    assert answer(big, memo) == "ok"
    assert memo.values == {} and memo.messages == "" and memo.message_ends == []
    assert answer(encoded(conversation(41)), memo) == "ok"


def test_elements_that_are_not_objects_end_the_remembered_run() -> None:
    body = conversation(3)
    body["messages"].insert(2, "a string")
    memo = primed(encoded(body))
    assert memo.message_ends and len(memo.message_ends) == 2
    again = conversation(4)
    again["messages"].insert(2, "a string")
    assert answer(encoded(again), memo) == "ok"
    assert memo.skipped == 2 + 4


def test_random_edits_of_a_remembered_body_get_the_whole_checks_answer() -> None:
    """Fuzz: a body the memo has seen, edited at random (a character inserted, deleted or
    replaced; a block that must be refused put in a random message), checked with the memo
    and whole: the same answer every time."""
    rng = random.Random(1207)
    pieces = ['"', "{", "}", "[", "]", ",", ":", " ", "x", "1", "\\", '"file_id":"f",', '"type":"url",']
    base = conversation(6)
    memo_text = encoded(base)
    for _ in range(600):
        body = json.loads(memo_text)
        if rng.random() < 0.3:
            message = rng.choice(body["messages"])
            message["content"].insert(rng.randrange(len(message["content"]) + 1),
                                      rng.choice([FILE_SOURCE, {"type": "text", "text": "fine"}]))
        text = encoded(body, indent=rng.choice([None, None, 1])).decode()
        for _ in range(rng.randrange(3)):
            at = rng.randrange(len(text))
            edit = rng.choice(["insert", "delete", "replace"])
            piece = rng.choice(pieces)
            text = (text[:at] + piece + text[at:] if edit == "insert" else
                    text[:at] + text[at + 1:] if edit == "delete" else text[:at] + piece + text[at + 1:])
        raw = text.encode()
        memo = primed(memo_text)
        assert answer(raw, memo) == answer(raw), text


@pytest.mark.parametrize(("before", "after", "says"), [
    (b'{"tools":[{"name":"aaaaaaaaaa","type":"custom"}],"model":"m"}',
     b'{"tools":[{"name":"aaaaaaaaaa","type":"bash_x"}],"model":"m"}', "tools[0].type 'bash_x'"),
    (b'{"messages":[{"role":"user","content":[{"type":"text","text":"aa"}]},{"role":"user","content":"b"}]}',
     b'{"messages":[{"role":"user","content":[{"type":"text","file_id":1}]},{"role":"user","content":"b"}]}',
     "messages[0].content[0] refers to a file"),
])
def test_a_value_as_long_as_the_last_one_that_differs_anywhere_is_parsed_again(before: bytes, after: bytes,
                                                                               says: str) -> None:
    """Where a skipped value ends, the body goes on as before: only the whole text can tell
    the two apart."""
    assert len(before) == len(after)
    memo = primed(before)
    result = answer(after, memo)
    assert says in result, result
    assert result == answer(after)


@pytest.mark.parametrize("changed", [0, 1, 5, 12, 19, 20])
def test_the_run_of_repeated_messages_ends_at_the_first_changed_one(changed: int) -> None:
    memo = primed(encoded(conversation(10)))  # 21 messages
    body = conversation(10)
    body["messages"][changed]["content"].append({"type": "text", "text": "edited"})
    assert answer(encoded(body), memo) == "ok"
    assert memo.skipped == changed + 4  # and model, system, tools, metadata
