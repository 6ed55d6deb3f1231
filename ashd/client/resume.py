"""Exactly-once delivery across reconnects: the bookkeeping shared by both clients.

ashd numbers every frame of a session's stream (``id:``, increasing). When a stream
breaks, the client reconnects to ``GET /api/sessions/:id/stream`` with ``Last-Event-ID``
set to the last id it delivered; the server replays what was stored after it and then
follows the running turn. :class:`StreamCursor` drops anything at or below the last
delivered id (a replay overlapping what was already seen) and counts reconnect attempts,
which reset whenever a new event arrives.

A stream that breaks before its first id cannot be resumed: the client does not know
where the turn began, and sending the message again could run the turn twice. That
case is raised, never retried.

Pure code: no I/O, no clock (the caller sleeps :meth:`StreamCursor.backoff_s`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ashd.client.errors import AshdConnectionError
from ashd.client.events import StreamEvent, typed
from ashd.client.sse import SSEParser, SSEProtocolError

DEFAULT_RECONNECTS = 5
_BACKOFF_BASE_S = 0.25
_BACKOFF_MAX_S = 5.0


def stream_path(session_id_segment: str) -> str:
    return f"/api/sessions/{session_id_segment}/stream"


FOLLOW_PAUSE_S = 1.0
"""How long a following client waits before reopening a stream the server closed cleanly
(an Ash server closes at each ``done``; ashd keeps a ``?follow=true`` stream open)."""


def follow_path(session_id_segment: str) -> str:
    """The stream that stays open across turns (ashd; other servers ignore the query)."""
    return f"{stream_path(session_id_segment)}?follow=true"


def first_headers(after: int | None) -> dict[str, str] | None:
    """The headers of a stream opened after event ``after`` (None: from the start)."""
    return {"Last-Event-ID": str(after)} if after is not None else None


class EventDecoder:
    """The bytes of one connection as typed events, as they complete (one per connection)."""

    def __init__(self, origin: str) -> None:
        self._parser = SSEParser()
        self._origin = origin

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        """Raises AshdConnectionError when the stream breaks the parser's limits."""
        try:
            return [typed(event) for event in self._parser.feed(chunk)]
        except SSEProtocolError as exc:
            raise AshdConnectionError(f"{self._origin} sent a bad stream: {exc}") from exc

    def ended_early(self) -> AshdConnectionError:
        """The failure of a turn's stream that ended without ``done``."""
        return AshdConnectionError(f"{self._origin} closed the stream before the turn finished")


@dataclass
class StreamCursor:
    """Where a consumer is in one session's stream (one instance per logical stream)."""

    last_id: int | None = None
    reconnects: int = DEFAULT_RECONNECTS
    attempts: int = 0

    def accept(self, event: StreamEvent) -> bool:
        """True if ``event`` is new and should be delivered (advances the cursor)."""
        seq = event.seq
        if seq is None:
            return True
        if self.last_id is not None and seq <= self.last_id:
            return False
        self.last_id, self.attempts = seq, 0
        return True

    def next_attempt(self, failure: AshdConnectionError) -> dict[str, str]:
        """The headers of the next reconnect, or raise ``failure`` when there is none."""
        if self.last_id is None:
            raise AshdConnectionError(f"{failure.message} (before the first event: not resumable)") from failure
        if self.attempts >= self.reconnects:
            raise AshdConnectionError(f"{failure.message} (gave up after {self.attempts} reconnects)") from failure
        self.attempts += 1
        return {"Last-Event-ID": str(self.last_id)}

    @property
    def backoff_s(self) -> float:
        """How long to wait before the current attempt (0 for the first)."""
        if self.attempts <= 1:
            return 0.0
        return min(_BACKOFF_BASE_S * 2 ** (self.attempts - 2), _BACKOFF_MAX_S)
