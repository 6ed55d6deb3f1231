"""A tool call's arguments are checked against its schema; the error says what to fix."""

from __future__ import annotations

from typing import Any

import pytest

from ashd.mcp.arguments import ArgumentError, check
from ashd.mcp.tools import TOOLS_BY_NAME

SEND = TOOLS_BY_NAME["send_message"].input_schema
IT_TAKES = "It takes: sessionId (string, required), message (string, required), model (string)."


def problem(arguments: Any, schema: dict[str, Any] = SEND) -> str:
    with pytest.raises(ArgumentError) as caught:
        check("send_message", schema, arguments)
    return str(caught.value)


def test_good_arguments_pass_through() -> None:
    assert check("send_message", SEND, {"sessionId": "s1", "message": "hi"}) == {"sessionId": "s1", "message": "hi"}


def test_a_missing_argument_is_named() -> None:
    assert problem({"sessionId": "s1"}) == f"invalid arguments for send_message: missing 'message'. {IT_TAKES}"


def test_an_unknown_argument_is_named() -> None:
    assert problem({"sessionId": "s1", "message": "hi", "session": "x"}).startswith(
        "invalid arguments for send_message: unknown argument 'session'.")


def test_a_wrong_type_names_the_argument() -> None:
    assert problem({"sessionId": 7, "message": "hi"}).startswith(
        "invalid arguments for send_message: 'sessionId': 7 is not of type 'string'.")


def test_every_problem_is_named_at_once() -> None:
    assert problem({"sesionId": "s1", "message": 5}).startswith(
        "invalid arguments for send_message: missing 'sessionId'; unknown argument 'sesionId'; "
        "'message': 5 is not of type 'string'.")


def test_an_empty_string_is_refused() -> None:
    assert "'message'" in problem({"sessionId": "s1", "message": ""})


def test_arguments_that_are_not_an_object_are_refused() -> None:
    assert problem(["s1", "hi"]).startswith("invalid arguments for send_message: ['s1', 'hi'] is not of type 'object'.")


def test_an_enum_lists_the_choices() -> None:
    schema = TOOLS_BY_NAME["list_sessions"].input_schema
    message = problem({"status": "asleep"}, schema)
    assert "'status': 'asleep' is not one of" in message and "'paused'" in message


def test_every_tool_schema_is_closed_and_its_required_arguments_exist() -> None:
    for tool in TOOLS_BY_NAME.values():
        schema = tool.input_schema
        assert schema["additionalProperties"] is False
        assert set(schema["required"]) <= set(schema["properties"]), tool.name
