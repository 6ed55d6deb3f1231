"""`AsyncAshdClient`: the asyncio twin of :class:`~ashd.client.AshdClient`.

Same routes (defined once in :mod:`ashd.client.calls`), same errors, same typed events
and the same exactly-once reconnecting streams; every method is a coroutine (streams are
async iterators). Standard library only::

    async with AsyncAshdClient("http://127.0.0.1:4100", api_key="ash_...") as client:
        session = await client.create_session("my-agent")
        async for event in client.send_message(session["id"], "Hello"):
            if isinstance(event, TextDelta):
                print(event.delta, end="")

Less common routes have no named method: ``await client.call(calls.list_keys())``
runs any :class:`~ashd.client.calls.Call`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any, Literal

from ashd.client import calls
from ashd.client.aio_transport import AsyncTransport
from ashd.client.calls import JSON, Call
from ashd.client.errors import AshdConnectionError, AshdError
from ashd.client.events import Done, StreamEvent
from ashd.client.resume import (
    DEFAULT_RECONNECTS,
    FOLLOW_PAUSE_S,
    EventDecoder,
    StreamCursor,
    first_headers,
    follow_path,
    stream_path,
)


class AsyncAshdClient:
    """Asyncio client for one ashd server; use from one event loop."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 30.0, *,
                 slow_timeout: float = 300.0) -> None:
        """Raise :class:`ValueError` if ``base_url`` is not an http(s) URL."""
        self._http = AsyncTransport(base_url, api_key, timeout)
        self.base_url = self._http.base_url
        self.slow_timeout = max(slow_timeout, timeout)

    async def __aenter__(self) -> AsyncAshdClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None  # one connection per request: nothing stays open

    async def call(self, call: Call) -> Any:
        """Execute any :class:`~ashd.client.calls.Call`."""
        timeout = self.slow_timeout if call.slow else None
        if call.shape == "bytes":
            return await self._http.request_bytes(call.method, call.path, call.query, timeout)
        answer = await self._http.request_json(call.method, call.path, call.body, call.query, timeout)
        try:
            return calls.unwrap(call, answer)
        except ValueError as exc:
            raise AshdError(200, str(exc)) from None

    async def health(self) -> JSON:
        return await self.call(calls.health())

    async def analytics(self, after: str | None = None, before: str | None = None) -> JSON:
        """``GET /api/analytics``: agents, sessions, messages, usage, latency, evals."""
        return await self.call(calls.analytics(after, before))

    async def deploy_agent(self, name: str, path: str | None = None,
                           files: Sequence[Mapping[str, str]] | None = None,
                           env: Mapping[str, str] | None = None) -> JSON:
        return await self.call(calls.deploy_agent(name, path, files, env))

    async def list_agents(self) -> list[JSON]:
        return await self.call(calls.list_agents())

    async def get_agent(self, name: str) -> JSON:
        return await self.call(calls.get_agent(name))

    async def delete_agent(self, name: str) -> None:
        await self.call(calls.delete_agent(name))

    async def create_session(self, agent: str, **options: Any) -> JSON:
        return await self.call(calls.create_session(agent, **options))

    async def list_sessions(self, agent: str | None = None, status: str | None = None) -> list[JSON]:
        return await self.call(calls.list_sessions(agent, status))

    async def get_session(self, session_id: str) -> JSON:
        return await self.call(calls.get_session(session_id))

    async def end_session(self, session_id: str) -> JSON:
        return await self.call(calls.end_session(session_id))

    async def session_action(self, session_id: str, verb: Literal["stop", "pause", "resume", "fork"]) -> JSON:
        """``POST /api/sessions/:id/<verb>``; returns the session (the new one for fork)."""
        return await self.call(calls.session_action(session_id, verb))

    async def list_messages(self, session_id: str, limit: int | None = None,
                            after: int | None = None) -> list[JSON]:
        return await self.call(calls.list_messages(session_id, limit, after))

    async def exec(self, session_id: str, command: str, timeout_ms: int | None = None) -> JSON:
        return await self.call(calls.exec_command(session_id, command, timeout_ms))

    async def list_files(self, session_id: str, include_hidden: bool = True) -> JSON:
        return await self.call(calls.list_files(session_id, include_hidden))

    async def read_file(self, session_id: str, path: str) -> bytes:
        return await self.call(calls.read_file(session_id, path))

    async def write_files(self, session_id: str, files: Mapping[str, bytes],
                          target: str | None = None) -> list[JSON]:
        return await self.call(calls.write_files(session_id, files, target))

    def send_message(self, session_id: str, content: str | Sequence[Mapping[str, Any]],
                     include_partial: bool = True, *, reconnects: int = DEFAULT_RECONNECTS,
                     **options: Any) -> AsyncIterator[StreamEvent]:
        """Run one turn, yielding its typed events; reconnects like the blocking client."""
        call = calls.send_message(session_id, content, include_partial, options)
        first = self._http.stream(call.method, call.path, call.body)
        return self._resumable(session_id, first, StreamCursor(reconnects=reconnects), until_done=True)

    def follow(self, session_id: str, after: int | None = None, *, until_done: bool = False,
               reconnects: int = DEFAULT_RECONNECTS) -> AsyncIterator[StreamEvent]:
        """Every stored event after ``after``, then each new turn's, until the session ends
        or the caller stops; ``until_done=True`` ends at the next ``Done``. As the blocking
        :meth:`AshdClient.follow`."""
        cursor = StreamCursor(last_id=after, reconnects=reconnects)
        if until_done:
            first = self._http.stream("GET", stream_path(calls.seg(session_id)), headers=first_headers(after))
            return self._resumable(session_id, first, cursor, until_done=False)
        return self._following(session_id, cursor)

    async def _following(self, session_id: str, cursor: StreamCursor) -> AsyncIterator[StreamEvent]:
        while True:
            decoder = EventDecoder(self.base_url)
            path = follow_path(calls.seg(session_id))
            chunks = self._http.stream("GET", path, headers=first_headers(cursor.last_id))
            failure: AshdConnectionError | None = None
            try:
                async for chunk in chunks:
                    for event in decoder.feed(chunk):
                        if cursor.accept(event):
                            yield event
            except AshdConnectionError as exc:
                failure = exc
            finally:
                await chunks.aclose()
            if failure is not None:
                cursor.next_attempt(failure)  # raises once reconnecting keeps failing
                await asyncio.sleep(cursor.backoff_s)
            elif (await self.get_session(session_id)).get("status") == "ended":
                return
            else:
                await asyncio.sleep(FOLLOW_PAUSE_S)  # closed cleanly (a server without follow)

    async def _resumable(self, session_id: str, chunks: AsyncGenerator[bytes, None], cursor: StreamCursor,
                         until_done: bool) -> AsyncIterator[StreamEvent]:
        while True:
            decoder = EventDecoder(self.base_url)
            try:
                async for chunk in chunks:
                    for event in decoder.feed(chunk):
                        if cursor.accept(event):
                            yield event
                            if isinstance(event, Done):
                                return
                if not until_done:
                    return
                failure = decoder.ended_early()
            except AshdConnectionError as exc:
                failure = exc
            finally:
                await chunks.aclose()
            headers = cursor.next_attempt(failure)
            await asyncio.sleep(cursor.backoff_s)
            chunks = self._http.stream("GET", stream_path(calls.seg(session_id)), headers=headers)
