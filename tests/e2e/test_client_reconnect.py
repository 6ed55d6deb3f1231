"""Issue #4: the client resumes a dropped stream by itself, every event exactly once.

A TCP proxy between client and a real ashd cuts the POST /messages connection in the
middle of a slow turn; the client must reconnect to /stream with Last-Event-ID and end
with exactly the frames the server stored for that turn: same ids, same order, no gap,
no duplicate.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from ashd.client import AshdClient, AsyncAshdClient, Done, SessionStart, StreamEvent, TextDelta
from tests.conftest import HELLO_AGENT
from tests.support.cutting_proxy import cutting_proxy
from tests.support.daemon import AshdProcess, sse_frames

pytestmark = pytest.mark.e2e
WORDS = [f"w{i}" for i in range(80)]
SLOW = "[[slow: 25]] [[say: " + " ".join(WORDS) + "]]"
CUT_AFTER_BYTES = 6000  # well inside the turn: several deltas in, far from done


def _session(daemon: AshdProcess) -> str:
    client = AshdClient(daemon.url, daemon.key)
    client.deploy_agent("hello", path=str(HELLO_AGENT))
    return str(client.create_session("hello")["id"])


def _stored(daemon: AshdProcess, sid: str) -> list[tuple[int | None, str, object]]:
    with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=60) as c:
        return sse_frames(c.get(f"/api/sessions/{sid}/stream").text)


def _check(events: list[StreamEvent], stored: list[tuple[int | None, str, object]]) -> None:
    got = [(int(e.id or 0), e.event) for e in events]
    assert got == [(i, name) for i, name, _ in stored]  # exactly once, in order, nothing missing
    assert isinstance(events[0], SessionStart) and isinstance(events[-1], Done)
    text = "".join(e.delta for e in events if isinstance(e, TextDelta))
    assert text.split() == WORDS


def test_sync_client_resumes_a_cut_stream(ashd_sqlite: AshdProcess) -> None:
    sid = _session(ashd_sqlite)
    with cutting_proxy(ashd_sqlite.port, {0: CUT_AFTER_BYTES}) as proxy:
        client = AshdClient(f"http://127.0.0.1:{proxy.port}", ashd_sqlite.key)
        events = list(client.send_message(sid, SLOW))
        assert proxy.cut.is_set() and proxy.connections >= 2  # it was cut, and it came back
    _check(events, _stored(ashd_sqlite, sid))


def test_async_client_resumes_a_cut_stream(ashd_sqlite: AshdProcess) -> None:
    sid = _session(ashd_sqlite)

    async def run(port: int) -> list[StreamEvent]:
        async with AsyncAshdClient(f"http://127.0.0.1:{port}", ashd_sqlite.key) as client:
            return [event async for event in client.send_message(sid, SLOW)]

    with cutting_proxy(ashd_sqlite.port, {0: CUT_AFTER_BYTES}) as proxy:
        events = asyncio.run(run(proxy.port))
        assert proxy.cut.is_set() and proxy.connections >= 2
    _check(events, _stored(ashd_sqlite, sid))


def test_follow_resumes_too(ashd_sqlite: AshdProcess) -> None:
    sid = _session(ashd_sqlite)
    direct = AshdClient(ashd_sqlite.url, ashd_sqlite.key)
    list(direct.send_message(sid, SLOW))
    with cutting_proxy(ashd_sqlite.port, {0: CUT_AFTER_BYTES}) as proxy:
        follower = AshdClient(f"http://127.0.0.1:{proxy.port}", ashd_sqlite.key)
        events = list(follower.follow(sid, after=0, until_done=True))
        assert proxy.cut.is_set()
    _check(events, _stored(ashd_sqlite, sid))
