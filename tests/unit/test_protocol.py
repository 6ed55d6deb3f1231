from __future__ import annotations

import pytest

from ashd.wire import protocol as p


@pytest.mark.parametrize("frame", [
    p.Query("hi"), p.Query([{"type": "text", "text": "x"}], True, "claude-x"), p.Interrupt(), p.Shutdown(),
])
def test_commands_round_trip(frame: p.Command) -> None:
    line = p.encode(frame)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert p.decode_command(line) == frame


@pytest.mark.parametrize("frame", [p.Ready(12, "s"), p.Message({"type": "x", "a": "b\nc"}), p.Error("e"), p.Done("s")])
def test_events_round_trip(frame: p.Event) -> None:
    assert p.decode_event(p.encode(frame)) == frame


@pytest.mark.parametrize("line, why", [
    (b"not json", "not JSON"),
    (b"[1]", "not a JSON object"),
    (b'{"cmd": "query", "ev": "done"}', "exactly one"),
    (b'{"cmd": "rm -rf"}', "unknown command"),
    (b'{"cmd": "query"}', "needs 'prompt'"),
    (b'{"cmd": "query", "prompt": 5}', "needs 'prompt'"),
])
def test_bad_commands_are_rejected(line: bytes, why: str) -> None:
    with pytest.raises(p.ProtocolError, match=why):
        p.decode_command(line)


def test_bad_events_are_rejected() -> None:
    with pytest.raises(p.ProtocolError, match="needs 'data'"):
        p.decode_event(b'{"ev": "message", "data": "str"}')
    with pytest.raises(p.ProtocolError, match="exceeds"):
        p.decode_event(b" " * (p.MAX_FRAME_BYTES + 1))
