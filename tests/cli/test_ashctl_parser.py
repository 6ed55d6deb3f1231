"""ashctl's argument parser: pure, complete, and the usage exit status."""

from __future__ import annotations

import argparse
import builtins
import io
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from ashd.cli import ashctl
from ashd.cli.ashctl import build_parser, run


def every_parser(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += every_parser(sub)
    return found


def test_build_parser_touches_nothing_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASH_SERVER_URL", "http://leaked.example:1")
    monkeypatch.setenv("ASH_API_KEY", "ash_leaked")

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("build_parser must not touch files, sockets or the cwd")

    for owner, name in [(builtins, "open"), (io, "open"), (os, "open"), (os, "scandir"),
                        (os, "listdir"), (os, "getcwd"), (socket, "socket"), (Path, "cwd")]:
        monkeypatch.setattr(owner, name, forbidden)
    help_text = "".join(p.format_help() for p in every_parser(build_parser()))
    assert "leaked" not in help_text
    assert "130  interrupted" in help_text


def test_man_page_can_be_generated() -> None:
    manpage = pytest.importorskip("argparse_manpage.manpage")
    text = str(manpage.Manpage(build_parser()))
    for word in ("ashctl", "deploy", "session", "chat", "exit status", "ASH_API_KEY"):
        assert word in text


@pytest.mark.parametrize(
    ("argv", "handler", "expected"),
    [
        (["health"], "_cmd_health", {}),
        (["deploy", "./a", "-n", "bot", "-e", "A=1", "-e", "B=x=y"], "_cmd_deploy",
         {"path": "./a", "name": "bot", "env": [("A", "1"), ("B", "x=y")]}),
        (["deploy", "./a"], "_cmd_deploy", {"name": None, "env": []}),
        (["agent", "list"], "_cmd_agent_list", {}),
        (["agent", "info", "bot"], "_cmd_agent_info", {"name": "bot"}),
        (["agent", "delete", "bot"], "_cmd_agent_delete", {"name": "bot"}),
        (["session", "create", "bot", "--model", "m", "-e", "K=V"], "_cmd_session_create",
         {"agent": "bot", "model": "m", "env": [("K", "V")]}),
        (["session", "list"], "_cmd_session_list", {"agent": None}),
        (["session", "list", "--agent", "bot"], "_cmd_session_list", {"agent": "bot"}),
        (["session", "info", "s1"], "_cmd_session_state", {"id": "s1"}),
        (["session", "send", "s1", "hello"], "_cmd_session_send",
         {"id": "s1", "message": "hello", "thinking": False}),
        (["session", "send", "s1", "-", "--thinking"], "_cmd_session_send",
         {"message": "-", "thinking": True}),
        (["session", "end", "s1"], "_cmd_session_state", {"session_command": "end"}),
        (["session", "stop", "s1"], "_cmd_session_state", {"session_command": "stop"}),
        (["session", "pause", "s1"], "_cmd_session_state", {"session_command": "pause"}),
        (["session", "resume", "s1"], "_cmd_session_state", {"session_command": "resume"}),
        (["session", "messages", "s1", "--limit", "5", "--after", "2"],
         "_cmd_session_messages", {"id": "s1", "limit": 5, "after": 2}),
        (["chat", "bot", "hi"], "_cmd_chat",
         {"agent": "bot", "message": "hi", "session": None, "end": False}),
        (["chat", "bot", "hi", "-s", "s1", "--end"], "_cmd_chat", {"session": "s1", "end": True}),
    ],
)
def test_every_command_parses(argv: list[str], handler: str, expected: dict[str, Any]) -> None:
    args = build_parser().parse_args(argv)
    assert args.handler is getattr(ashctl, handler)
    assert {key: getattr(args, key) for key in expected} == expected
    assert (args.server, args.api_key, args.json) == (None, None, False)


@pytest.mark.parametrize(
    ("argv", "server", "as_json"),
    [
        (["--json", "session", "list"], None, True),
        (["session", "list", "--json"], None, True),
        (["--server", "http://a:1", "session", "list"], "http://a:1", False),
        (["--server", "http://a:1", "health", "--server", "http://b:2"], "http://b:2", False),
    ],
)
def test_global_flags_work_before_and_after_the_command(
    argv: list[str], server: str | None, as_json: bool
) -> None:
    args = build_parser().parse_args(argv)
    assert (args.server, args.json) == (server, as_json)


@pytest.mark.parametrize(
    "argv",
    [[], ["session"], ["agent", "info"], ["bogus"], ["deploy", "x", "-e", "NOVALUE"],
     ["session", "messages", "s1", "--limit", "many"], ["chat", "bot"]],
)
def test_usage_errors_exit_2(argv: list[str]) -> None:
    err = io.StringIO()
    assert run(argv, io.StringIO(), err, {}) == 2
    assert "usage: ashctl" in err.getvalue()


def test_help_exits_0() -> None:
    out = io.StringIO()
    assert run(["--help"], out, io.StringIO(), {}) == 0
    assert "exit status" in out.getvalue()


def test_bad_server_url_is_a_usage_error() -> None:
    err = io.StringIO()
    assert run(["--server", "localhost:4100", "health"], io.StringIO(), err, {}) == 2
    assert "server URL must look like http://host:port" in err.getvalue()
