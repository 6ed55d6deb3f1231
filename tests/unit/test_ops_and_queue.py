"""Pure parts of exec, logs and the queue: validation, redaction, the ring, backoff, framing."""

from __future__ import annotations

import pytest

from ashd.errors import BadRequest
from ashd.http.ops import ExecRequest
from ashd.http.queue import parse_enqueue
from ashd.http.queue_worker import prune_every, retry_delay
from ashd.sandbox import bwrap, cliwrap
from ashd.sandbox.logring import LogBook, LogRing, redact
from ashd.wire import protocol


def test_exec_request_validation() -> None:
    assert ExecRequest.from_request({"command": "ls"}) == ExecRequest("ls", 30_000)
    assert ExecRequest.from_request({"command": "ls", "timeout": 300_000}).timeout_ms == 300_000
    for bad in ({}, {"command": ""}, {"command": " \n"}, {"command": ["ls"]}, {"command": "x" * 100_001},
                {"command": "a\0b"}, {"command": "ls", "timeout": 0}, {"command": "ls", "timeout": 300_001},
                {"command": "ls", "timeout": True}, {"command": "ls", "timeout": 1.5}, {"command": "ls", "cwd": "/"}):
        with pytest.raises(BadRequest):
            ExecRequest.from_request(bad)


def test_enqueue_validation() -> None:
    item = parse_enqueue("t", {"agentName": "a", "prompt": "hi"})
    assert (item.priority, item.max_retries, item.session_id) == (0, 3, None)
    sid = "6F9619FF-8B86-D011-B42D-00C04FC964FF"
    assert parse_enqueue("t", {"agentName": "a", "prompt": "p", "sessionId": sid}).session_id == sid.lower()
    for bad in ({"prompt": "p"}, {"agentName": "a"}, {"agentName": "a", "prompt": " "},
                {"agentName": "a", "prompt": "p", "maxRetries": 11}, {"agentName": "a", "prompt": "p", "priority": "1"},
                {"agentName": "a", "prompt": "p", "sessionId": 5}, {"agentName": "a", "prompt": "p", "x": 1}):
        with pytest.raises(BadRequest):
            parse_enqueue("t", bad)


def test_retry_delay_doubles_and_caps() -> None:
    assert [retry_delay(n, 5, 300) for n in range(8)] == [5, 10, 20, 40, 80, 160, 300, 300]
    assert retry_delay(10_000, 0.1, 1) == 1


def test_finished_items_are_looked_for_every_quarter_of_their_keep_between_a_second_and_an_hour() -> None:
    assert [prune_every(s) for s in (0.5, 2, 40, 7 * 86400)] == [1, 1, 10, 3600]


def test_redaction() -> None:
    text = redact("key ash_AbCdEf0123456789xyz and sk-ant-api03-secretSECRET here; ash_ alone")
    assert "AbCdEf" not in text and "secretSECRET" not in text
    assert "ash_*** and sk-ant-*** here; ash_ alone" in text


def test_ring_indexes_grow_and_old_lines_fall_out() -> None:
    ring = LogRing(capacity=3)
    for n in range(5):
        ring.add("stderr", f"line {n}\n")
    assert [(x.index, x.text) for x in ring.after(-1)] == [(2, "line 2"), (3, "line 3"), (4, "line 4")]
    assert [x.index for x in ring.after(3)] == [4]
    with pytest.raises(ValueError):
        ring.add("debug", "x")
    assert ring.add("system", "y" * 10_000).text.endswith("[line truncated]")


def test_book_forgets_least_recently_used() -> None:
    book = LogBook(capacity=10, keep=2)
    book.system("a", "1")
    book.system("b", "2")
    book.system("a", "3")
    book.system("c", "4")  # b is the least recently written
    assert book.find("b") is None and book.lines("b") == []
    assert [x.text for x in book.lines("a")] == ["1", "3"]


def test_exec_frames_round_trip() -> None:
    cmd = protocol.Exec(7, "echo 'hi'", 500)
    assert protocol.decode_command(protocol.encode(cmd)) == cmd
    result = protocol.ExecResult(7, 3, "out\n", "err\u0001", True, False)
    assert protocol.decode_event(protocol.encode(result)) == result
    with pytest.raises(protocol.ProtocolError):
        protocol.decode_command(b'{"cmd":"exec","reqId":1,"command":"x"}\n')


def test_wrapper_runs_only_the_shell_for_exec() -> None:
    assert cliwrap.program_and_args(["--print", "x"], bwrap.INSIDE_CLI) == (bwrap.INSIDE_CLI, ["--print", "x"])
    exec_args = ["--ashd-exec", "/bin/sh", "-c", "id"]
    assert cliwrap.program_and_args(exec_args, bwrap.INSIDE_CLI) == ("/bin/sh", ["-c", "id"])
    for bad in (["--ashd-exec"], ["--ashd-exec", "/usr/bin/python3", "-c", "x"]):
        with pytest.raises(ValueError):
            cliwrap.program_and_args(bad, bwrap.INSIDE_CLI)
    mounts = bwrap.Mounts("/cli", "/ws", "/home", "/claude", "/mcp", 1024, "/claude.md")
    argv = bwrap.bwrap_argv(mounts, bwrap.Fds(3, 4, 5, 6, 7), ["-c", "id"], "/bin/sh")
    assert argv[-4:] == ["--", "/bin/sh", "-c", "id"]
