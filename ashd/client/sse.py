"""Incremental parser for ``text/event-stream`` (Server-Sent Events).

Pure code: no sockets, no threads. Feed it whatever pieces the network hands
over (bytes split anywhere, even inside a UTF-8 character or between ``\\r`` and
``\\n``) and it returns the events completed so far. It follows the WHATWG
parsing rules that matter to Ash streams:

* lines end with CRLF, LF or CR; a blank line dispatches the pending event;
* ``event:`` sets the name (default ``"message"``), ``data:`` lines are joined
  with ``\\n``, ``id:`` sets the last event id, which persists across events
  until the next ``id:``; ``retry:`` and unknown fields are ignored;
* lines starting with ``:`` are comments (heartbeats) and are ignored;
* a frame without any ``data:`` line is not dispatched;
* a partial frame at end of stream is discarded.

Ash sends one-line JSON in ``data``; :attr:`SSEEvent.data` is the decoded
object when it is a JSON object, else the raw text.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

_LINE_END = re.compile(r"\r\n|\r|\n")
DEFAULT_MAX_EVENT_CHARS = 64 * 1024 * 1024


class SSEProtocolError(ValueError):
    """The stream broke a limit of the parser (an event larger than allowed)."""


@dataclass(frozen=True)
class SSEEvent:
    """One dispatched event.

    ``data`` is the decoded JSON object when the payload is a JSON object,
    otherwise the payload text. ``id`` is the stream's last event id when this
    event was dispatched, or ``None`` if the stream never sent one.
    """

    event: str
    data: dict[str, Any] | str
    id: str | None = None


def decode_data(text: str) -> dict[str, Any] | str:
    """Return ``text`` parsed as a JSON object, or ``text`` unchanged."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, dict) else text


class SSEParser:
    """Incremental SSE parser; one instance per stream, not thread-safe."""

    def __init__(self, max_event_chars: int = DEFAULT_MAX_EVENT_CHARS) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._max_event_chars = max_event_chars
        self._line_parts: list[str] = []
        self._partial_chars = 0
        self._data_chars = 0
        self._after_cr = False
        self._at_stream_start = True
        self._event = ""
        self._data: list[str] = []
        self._last_id: str | None = None

    def feed(self, chunk: bytes | str) -> list[SSEEvent]:
        """Consume one piece of the stream; return the events it completed.

        Raises :class:`SSEProtocolError` if a single event grows beyond
        ``max_event_chars``.
        """
        text = self._decoder.decode(chunk) if isinstance(chunk, bytes) else chunk
        if self._at_stream_start and text:
            self._at_stream_start = False
            text = text.removeprefix("\ufeff")
        if self._after_cr and text:
            # The previous piece ended in "\r"; a "\n" here finishes that CRLF.
            self._after_cr = False
            text = text.removeprefix("\n")
        events: list[SSEEvent] = []
        start = 0
        for match in _LINE_END.finditer(text):
            line = "".join(self._line_parts) + text[start : match.start()]
            self._line_parts.clear()
            self._partial_chars = 0
            start = match.end()
            event = self._process_line(line)
            if event is not None:
                events.append(event)
        rest = text[start:]
        if text.endswith("\r"):
            self._after_cr = True
        if rest:
            self._line_parts.append(rest)
            self._partial_chars += len(rest)
        if self._data_chars + self._partial_chars > self._max_event_chars:
            raise SSEProtocolError(
                f"server-sent event larger than {self._max_event_chars} characters"
            )
        return events

    def _process_line(self, line: str) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep:
            value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
            self._data_chars += len(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._last_id = value
        return None

    def _dispatch(self) -> SSEEvent | None:
        data, name = self._data, self._event
        self._data, self._event, self._data_chars = [], "", 0
        if not data:
            return None
        return SSEEvent(name or "message", decode_data("\n".join(data)), self._last_id)


def iter_sse(chunks: Iterable[bytes | str]) -> Iterator[SSEEvent]:
    """Yield the events of a stream given as successive chunks.

    Lazy: each event is yielded as soon as the chunk completing it arrives.
    """
    parser = SSEParser()
    for chunk in chunks:
        yield from parser.feed(chunk)
