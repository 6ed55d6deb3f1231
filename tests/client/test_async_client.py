"""AsyncAshdClient against a fake server: JSON calls, errors, streams, reconnects."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from ashd.client import AshdConnectionError, AshdError, AsyncAshdClient, Done, TextDelta, calls

T = TypeVar("T")
MESSAGES = "/api/sessions/s1/messages"
STREAM = "/api/sessions/s1/stream"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def test_json_call_unwraps_the_envelope_and_sends_the_key(fake_ashd: Any) -> None:
    fake_ashd.json("GET", "/api/sessions/s1", {"session": {"id": "s1", "status": "active"}})
    client = AsyncAshdClient(fake_ashd.url, api_key="ash_k")
    assert run(client.get_session("s1")) == {"id": "s1", "status": "active"}
    assert fake_ashd.last().headers["authorization"] == "Bearer ash_k"


def test_post_body_and_query(fake_ashd: Any) -> None:
    fake_ashd.json("POST", "/api/sessions", {"session": {"id": "s2"}}, status=201)
    fake_ashd.json("GET", "/api/sessions", {"sessions": []})
    client = AsyncAshdClient(fake_ashd.url)
    run(client.create_session("hello", system_prompt="be brief"))
    assert fake_ashd.last().body == {"agent": "hello", "systemPrompt": "be brief"}
    assert run(client.list_sessions(agent="hello")) == []
    assert fake_ashd.last().path == "/api/sessions"


def test_server_error_body_becomes_ashd_error(fake_ashd: Any) -> None:
    fake_ashd.error("GET", "/api/agents/x", 404, "Agent x not found")
    with pytest.raises(AshdError, match=r"Agent x not found \(404\)"):
        run(AsyncAshdClient(fake_ashd.url).get_agent("x"))


def test_unreachable_server_is_a_connection_error() -> None:
    with pytest.raises(AshdConnectionError, match="refused"):
        run(AsyncAshdClient("http://127.0.0.1:9", timeout=2).health())


def test_raw_bytes(fake_ashd: Any) -> None:
    fake_ashd.raw("GET", "/api/sessions/s1/files/a/b.txt", 200, b"\x00bytes", "application/octet-stream")
    assert run(AsyncAshdClient(fake_ashd.url).read_file("s1", "a/b.txt")) == b"\x00bytes"


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "close-delimited"])
def test_stream_yields_typed_events(fake_ashd: Any, frame: Any, chunked: bool) -> None:
    fake_ashd.sse("POST", MESSAGES, [frame("session_start", {"sessionId": "s1"}, "1"),
                                     frame("text_delta", {"delta": "hi"}, "2"),
                                     frame("done", {"sessionId": "s1"}, "3")], chunked=chunked)

    async def collect() -> list[Any]:
        return [e async for e in AsyncAshdClient(fake_ashd.url).send_message("s1", "hi")]

    events = run(collect())
    assert [type(e) for e in events][1:] == [TextDelta, Done]
    assert events[1].delta == "hi"


def test_stream_resumes_with_last_event_id(fake_ashd: Any, frame: Any) -> None:
    fake_ashd.sse("POST", MESSAGES, [frame("session_start", {}, "1"), frame("text_delta", {"delta": "a"}, "2")])
    fake_ashd.sse("GET", STREAM, [frame("text_delta", {"delta": "a"}, "2"), frame("done", {}, "3")])

    async def collect() -> list[Any]:
        return [e async for e in AsyncAshdClient(fake_ashd.url).send_message("s1", "hi")]

    assert [e.id for e in run(collect())] == ["1", "2", "3"]
    assert fake_ashd.last().headers["last-event-id"] == "2"


def test_any_call_runs_through_call(fake_ashd: Any) -> None:
    fake_ashd.json("GET", "/api/api-keys", {"keys": [{"id": "k1"}]})
    assert run(AsyncAshdClient(fake_ashd.url).call(calls.list_keys())) == [{"id": "k1"}]


def test_follow_goes_past_each_done_and_ends_with_the_session(fake_ashd: Any, frame: Any) -> None:
    fake_ashd.sse("GET", STREAM, [frame(name, {"sessionId": "s1"}, str(seq)) for turn in range(3)
                                  for seq, name in ((turn * 2 + 1, "session_start"), (turn * 2 + 2, "done"))])
    fake_ashd.json("GET", "/api/sessions/s1", {"session": {"id": "s1", "status": "ended"}})

    async def follow() -> list[Any]:
        return [event async for event in AsyncAshdClient(fake_ashd.url).follow("s1")]

    events = run(follow())
    assert [type(e) for e in events].count(Done) == 3 and [e.id for e in events] == [str(i) for i in range(1, 7)]
    assert fake_ashd.requests[0].query == "follow=true"


def test_follow_until_done_stops_at_the_first_done(fake_ashd: Any, frame: Any) -> None:
    fake_ashd.sse("GET", STREAM, [frame("session_start", {}, "1"), frame("done", {}, "2"),
                                  frame("session_start", {}, "3")])

    async def follow() -> list[Any]:
        return [event async for event in AsyncAshdClient(fake_ashd.url).follow("s1", until_done=True)]

    assert [e.id for e in run(follow())] == ["1", "2"]
