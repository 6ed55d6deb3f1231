"""The directive language: parse ``[[name: argument]]`` markers out of prompt text.

Pure: no I/O, no clock, no threads. The grammar and the meaning of every directive are
documented in ``docs/scripted-model.md``; this module only turns text into a tuple of
frozen :class:`Directive` values and splits that tuple into model responses.

A directive is ``[[`` + name + optional ``: argument`` + ``]]``. Arguments may contain
balanced ``[[ ]]`` pairs (bash tests, nested JSON arrays). Text outside directives is
ignored; a name that is not in :data:`DIRECTIVE_NAMES` is left as plain text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

DIRECTIVE_NAMES = frozenset(
    {"say", "think", "bash", "tool", "error", "slow", "sleep", "echo-history", "echo-system", "usage"}
)
_HEAD = re.compile(r"\[\[\s*([a-z][a-z-]*)\s*(:|\]\])")
_USAGE_PART = re.compile(r"^(in|out)=(\d+)$")
_ERROR_FLAGS = frozenset({"retry=true", "retry=false", "stream-only"})


class DirectiveError(ValueError):
    """A known directive whose argument is malformed (message names the directive)."""


@dataclass(frozen=True)
class Say:
    """Emit a text block."""

    text: str


@dataclass(frozen=True)
class Think:
    """Emit a thinking block (thinking deltas, then a signature delta)."""

    text: str


@dataclass(frozen=True)
class ToolCall:
    """Emit a ``tool_use`` block; the response ends with ``stop_reason: tool_use``."""

    name: str
    input: dict[str, Any]


@dataclass(frozen=True)
class Fail:
    """Answer with an HTTP error, or an SSE ``error`` event once the stream has started.

    ``should_retry`` sets the ``x-should-retry`` header; ``stream_only`` errors are sent
    only to streaming requests (as an SSE event) and skipped by non-streaming ones.
    """

    status: int
    message: str
    should_retry: bool | None = None
    stream_only: bool = False


@dataclass(frozen=True)
class Slow:
    """Delay, in milliseconds, between streamed events of the response it ends up in."""

    ms: int


@dataclass(frozen=True)
class Sleep:
    """Pause, in milliseconds, at this position (before the response, or between blocks)."""

    ms: int


@dataclass(frozen=True)
class EchoHistory:
    """Emit a text block listing every user prompt of the request, oldest first."""


@dataclass(frozen=True)
class EchoSystem:
    """Emit a text block with the request's system prompt (its text blocks joined)."""


@dataclass(frozen=True)
class Usage:
    """Override the reported token usage; ``None`` keeps the server default."""

    input_tokens: int | None
    output_tokens: int | None


Directive = Say | Think | ToolCall | Fail | Slow | Sleep | EchoHistory | EchoSystem | Usage


def parse_directives(text: str) -> tuple[Directive, ...]:
    """Return the directives in ``text`` in order of appearance.

    Raises :class:`DirectiveError` when a known directive has a malformed argument, e.g.
    ``[[error: abc]]`` or ``[[tool: Bash {not json}]]``. Unterminated markers are ignored.
    """
    found: list[Directive] = []
    pos = 0
    while (match := _HEAD.search(text, pos)) is not None:
        name = match.group(1)
        if match.group(2) == "]]":
            arg, end = None, match.end()
        else:
            close = _find_close(text, match.end())
            if close < 0:
                break
            arg, end = text[match.end() : close].strip(), close + 2
        if name in DIRECTIVE_NAMES:
            found.append(_build(name, arg))
            pos = end
        else:
            pos = match.start() + 2
    return tuple(found)


def _find_close(text: str, start: int) -> int:
    """Index of the ``]]`` closing a directive whose argument starts at ``start``, or -1."""
    depth = 0
    i = start
    while i < len(text) - 1:
        pair = text[i : i + 2]
        if pair == "[[":
            depth += 1
            i += 2
        elif pair == "]]":
            if depth == 0:
                return i
            depth -= 1
            i += 2
        else:
            i += 1
    return -1


def _build(name: str, arg: str | None) -> Directive:
    """Turn one ``name``/``arg`` pair into a directive (raises :class:`DirectiveError`)."""
    if name == "echo-history":
        return EchoHistory()
    if name == "echo-system":
        return EchoSystem()
    if arg is None:
        raise DirectiveError(f"[[{name}]] needs an argument: [[{name}: ...]]")
    if name == "say":
        return Say(arg)
    if name == "think":
        return Think(arg)
    if name == "bash":
        return ToolCall("Bash", {"command": arg, "description": "scripted"})
    if name == "tool":
        return _tool(arg)
    if name == "error":
        return _fail(arg)
    if name == "usage":
        return _usage(arg)
    return Slow(_millis(name, arg)) if name == "slow" else Sleep(_millis(name, arg))


def _tool(arg: str) -> ToolCall:
    """Parse ``Name {json object}``; the JSON part is optional (defaults to ``{}``)."""
    name, _, raw = arg.partition(" ")
    if not name:
        raise DirectiveError("[[tool: Name {json}]] needs a tool name")
    if not raw.strip():
        return ToolCall(name, {})
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise DirectiveError(f"[[tool: {name} ...]] input is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise DirectiveError(f"[[tool: {name} ...]] input must be a JSON object")
    return ToolCall(name, value)


def _fail(arg: str) -> Fail:
    """Parse ``STATUS [retry=true|false] [stream-only] message``; STATUS is 400-599."""
    words = arg.split(" ")
    if not words[0].isdigit() or not 400 <= int(words[0]) <= 599:
        raise DirectiveError(f"[[error: {arg}]] must start with a status 400-599")
    should_retry: bool | None = None
    stream_only = False
    rest = words[1:]
    while rest and rest[0] in _ERROR_FLAGS:
        flag = rest.pop(0)
        if flag == "stream-only":
            stream_only = True
        else:
            should_retry = flag == "retry=true"
    return Fail(int(words[0]), " ".join(rest).strip(), should_retry, stream_only)


def _usage(arg: str) -> Usage:
    """Parse ``in=N out=M`` (either part may be left out)."""
    values: dict[str, int] = {}
    for part in arg.split():
        match = _USAGE_PART.match(part)
        if match is None:
            raise DirectiveError(f"[[usage: {arg}]] expects in=N and/or out=M")
        values[match.group(1)] = int(match.group(2))
    return Usage(values.get("in"), values.get("out"))


def _millis(name: str, arg: str) -> int:
    """Parse a non-negative integer number of milliseconds."""
    if not arg.isdigit():
        raise DirectiveError(f"[[{name}: {arg}]] expects milliseconds (a whole number)")
    return int(arg)


def split_responses(directives: tuple[Directive, ...]) -> tuple[tuple[Directive, ...], ...]:
    """Split a prompt's directives into one group per model response.

    Each group ends right after a :class:`ToolCall` (the CLI then runs the tool and asks
    again) or a :class:`Fail` that is not ``stream_only`` (after a mid-stream error the
    CLI asks the model to resume). The last group holds whatever follows and may be
    empty. There is always at least one group.
    """
    groups: list[tuple[Directive, ...]] = []
    current: list[Directive] = []
    for directive in directives:
        current.append(directive)
        if isinstance(directive, ToolCall) or (
            isinstance(directive, Fail) and not directive.stream_only
        ):
            groups.append(tuple(current))
            current = []
    groups.append(tuple(current))
    return tuple(groups)
