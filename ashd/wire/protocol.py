"""The bridge wire protocol: newline-delimited JSON over a unix socket.

ashd -> bridge commands carry ``cmd``; bridge -> ashd events carry ``ev``. Each frame is one
JSON object on one line. Frames are validated on decode: a plain object, exactly one of
``cmd``/``ev`` from the known set, required fields present with the right type, and a
bounded size. Both ends import this module, so the two sides cannot drift apart.

Commands: ``query {prompt, includePartialMessages?, model?, settings?}`` (``settings``: this
turn's own CLI options, see :data:`TURN_SETTINGS`), ``interrupt``, ``shutdown``,
``transcript_ack {reqId, error?}``, ``exec {reqId, command, timeoutMs}``.
Events: ``ready {pid, sessionId}``, ``message {data}`` (a raw SDK message),
``error {error}``, ``done {sessionId}``, ``transcript {reqId, subpath, entries}`` (the SDK's
session-store append: ashd answers with ``transcript_ack`` on receipt and stores the
entries before the turn's ``done``), ``exec_result {reqId, exitCode, stdout, stderr,
truncated, timedOut}`` (the answer to the ``exec`` with that ``reqId``; an exec runs beside
a turn, never inside it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import ujson

MAX_FRAME_BYTES = 64 * 1024 * 1024
"""A frame longer than this is a protocol error (it bounds memory on both ends)."""

READY_BYTE = b"R"
"""Written once on the bridge's stdout when it listens and the CLI is connected."""


TURN_SETTINGS = ("maxTurns", "maxBudgetUsd", "effort", "thinking", "outputFormat")
"""The per-message options a ``query`` may carry (validated by ashd/options.py)."""


class ProtocolError(ValueError):
    """A frame that is not valid protocol; the connection should be dropped."""


@dataclass(frozen=True)
class Query:
    prompt: str | list[dict[str, Any]]
    include_partial_messages: bool = False
    model: str | None = None
    # This turn's own CLI options ({"maxTurns": 3, "effort": "low", ...}; wire names).
    settings: dict[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Interrupt:
    pass


@dataclass(frozen=True)
class Shutdown:
    pass


@dataclass(frozen=True)
class TranscriptAck:
    req_id: int
    error: str | None = None


@dataclass(frozen=True)
class Transcript:
    req_id: int
    subpath: str
    entries: list[dict[str, Any]] = field(hash=False)


@dataclass(frozen=True)
class Ready:
    pid: int
    session_id: str


@dataclass(frozen=True)
class Message:
    data: dict[str, Any] = field(hash=False)


@dataclass(frozen=True)
class Error:
    error: str


@dataclass(frozen=True)
class Done:
    session_id: str


@dataclass(frozen=True)
class Exec:
    """Run ``/bin/sh -c command`` inside the sandbox; answered by one ``ExecResult``."""

    req_id: int
    command: str
    timeout_ms: int


@dataclass(frozen=True)
class ExecResult:
    req_id: int
    exit_code: int
    stdout: str
    stderr: str
    truncated: bool = False
    timed_out: bool = False


Command = Query | Interrupt | Shutdown | TranscriptAck | Exec
Event = Ready | Message | Error | Done | Transcript | ExecResult


def encode(frame: Command | Event) -> bytes:
    """Serialize one frame to a single newline-terminated line."""
    return ujson.dumps(_to_wire(frame), ensure_ascii=False, escape_forward_slashes=False).encode() + b"\n"


def _to_wire(frame: Command | Event) -> dict[str, Any]:
    if isinstance(frame, Query):
        out: dict[str, Any] = {"cmd": "query", "prompt": frame.prompt}
        if frame.include_partial_messages:
            out["includePartialMessages"] = True
        if frame.model:
            out["model"] = frame.model
        if frame.settings:
            out["settings"] = frame.settings
        return out
    if isinstance(frame, Interrupt):
        return {"cmd": "interrupt"}
    if isinstance(frame, Shutdown):
        return {"cmd": "shutdown"}
    if isinstance(frame, TranscriptAck):
        ack: dict[str, Any] = {"cmd": "transcript_ack", "reqId": frame.req_id}
        if frame.error:
            ack["error"] = frame.error
        return ack
    if isinstance(frame, Exec):
        return {"cmd": "exec", "reqId": frame.req_id, "command": frame.command, "timeoutMs": frame.timeout_ms}
    if isinstance(frame, ExecResult):
        return {"ev": "exec_result", "reqId": frame.req_id, "exitCode": frame.exit_code, "stdout": frame.stdout,
                "stderr": frame.stderr, "truncated": frame.truncated, "timedOut": frame.timed_out}
    if isinstance(frame, Transcript):
        return {"ev": "transcript", "reqId": frame.req_id, "subpath": frame.subpath, "entries": frame.entries}
    if isinstance(frame, Ready):
        return {"ev": "ready", "pid": frame.pid, "sessionId": frame.session_id}
    if isinstance(frame, Message):
        return {"ev": "message", "data": frame.data}
    if isinstance(frame, Error):
        return {"ev": "error", "error": frame.error}
    return {"ev": "done", "sessionId": frame.session_id}


def _parse(line: bytes, tag: str) -> tuple[str, dict[str, Any]]:
    if len(line) > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {len(line)} bytes exceeds {MAX_FRAME_BYTES}")
    try:
        obj = ujson.loads(line)
    except ValueError as exc:
        raise ProtocolError(f"frame is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("frame is not a JSON object")
    other = "ev" if tag == "cmd" else "cmd"
    if other in obj or not isinstance(obj.get(tag), str):
        raise ProtocolError(f"frame must carry exactly one string '{tag}' field")
    return obj[tag], obj


def _field(obj: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = obj.get(name)
    if not isinstance(value, kind):
        raise ProtocolError(f"'{obj.get('cmd') or obj.get('ev')}' frame needs '{name}'")
    return value


def decode_command(line: bytes) -> Command:
    """Parse a command line (bridge side). Raises ProtocolError."""
    name, obj = _parse(line, "cmd")
    if name == "query":
        model = obj.get("model")
        settings = obj.get("settings") or {}
        if not isinstance(settings, dict) or set(settings) - set(TURN_SETTINGS):
            raise ProtocolError(f"'query' settings must be an object of {', '.join(TURN_SETTINGS)}")
        return Query(
            prompt=_field(obj, "prompt", (str, list)),
            include_partial_messages=bool(obj.get("includePartialMessages", False)),
            model=model if isinstance(model, str) and model else None,
            settings=settings,
        )
    if name == "interrupt":
        return Interrupt()
    if name == "shutdown":
        return Shutdown()
    if name == "transcript_ack":
        error = obj.get("error")
        return TranscriptAck(_field(obj, "reqId", int), error if isinstance(error, str) else None)
    if name == "exec":
        return Exec(_field(obj, "reqId", int), _field(obj, "command", str), _field(obj, "timeoutMs", int))
    raise ProtocolError(f"unknown command {name!r}")


def decode_event(line: bytes) -> Event:
    """Parse an event line (ashd side). Raises ProtocolError."""
    name, obj = _parse(line, "ev")
    if name == "ready":
        return Ready(pid=_field(obj, "pid", int), session_id=_field(obj, "sessionId", str))
    if name == "message":
        return Message(data=_field(obj, "data", dict))
    if name == "error":
        return Error(error=_field(obj, "error", str))
    if name == "done":
        return Done(session_id=_field(obj, "sessionId", str))
    if name == "transcript":
        entries = _field(obj, "entries", list)
        if not all(isinstance(e, dict) for e in entries):
            raise ProtocolError("'transcript' entries must be JSON objects")
        return Transcript(_field(obj, "reqId", int), _field(obj, "subpath", str), entries)
    if name == "exec_result":
        return ExecResult(_field(obj, "reqId", int), _field(obj, "exitCode", int), _field(obj, "stdout", str),
                          _field(obj, "stderr", str), obj.get("truncated") is True, obj.get("timedOut") is True)
    raise ProtocolError(f"unknown event {name!r}")
