"""Issue #11 item 5: any daemon on a shared Postgres serves any session's stream.

Two real ashd processes (own data dirs, own ports) on one fresh Postgres database. A turn runs
on A; a client that lost A's stream in the middle of the turn reconnects to B with
``Last-Event-ID``: B gives exactly the missed events, then the rest of the turn live (before A
has even finished it), same ids, no gap, no duplicate, ending with ``done``. Following
(``?follow=true``), B also streams the next turn started on A, and ends when the session ends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import HELLO_AGENT
from tests.store.pg import backend_database
from tests.support.daemon import AshdProcess, sse_frames

pytestmark = pytest.mark.e2e
WAIT_S = 180.0
KEY = "ash_fanout_admin"
HEADERS = {"Authorization": f"Bearer {KEY}"}
FIRST = " ".join(f"a{i}" for i in range(20))
SECOND = " ".join(f"b{i}" for i in range(20))
# Part one streams, the turn pauses (the client reconnects elsewhere meanwhile), part two streams.
LONG_TURN = f"[[slow: 20]] [[say: {FIRST}]] [[sleep: 4000]] [[say: {SECOND}]]"

Frame = tuple[int | None, str, Any]


def frames(chunks: Iterator[str]) -> Iterator[tuple[float, Frame]]:
    """Each SSE frame as it arrives, with its arrival time (heartbeat comments skipped)."""
    buffer = ""
    for chunk in chunks:
        buffer += chunk.replace("\r\n", "\n")
        *blocks, buffer = buffer.split("\n\n")
        for block in blocks:
            for parsed in sse_frames(block + "\n\n"):
                yield time.monotonic(), parsed


def read_to(chunks: Iterator[tuple[float, Frame]], name: str, count: int = 1) -> list[tuple[float, Frame]]:
    out = []
    for arrived in chunks:
        out.append(arrived)
        count -= arrived[1][1] == name
        if count == 0:
            break
    return out


class Reader(threading.Thread):
    """Reads one stream of B on a thread of its own, to its end."""

    def __init__(self, daemon: AshdProcess, sid: str, last_id: int, follow: bool, dones: int = 1) -> None:
        super().__init__(daemon=True)
        self.url = f"{daemon.url}/api/sessions/{sid}/stream"
        self.headers = {**HEADERS, "Last-Event-ID": str(last_id)}
        self.params = {"follow": "true"} if follow else {}
        self.dones = dones
        self.got: list[tuple[float, Frame]] = []
        self.raw = ""  # everything B sent, heartbeat comments included
        self.connected = threading.Event()
        self.ended = threading.Event()  # the server closed the stream

    def run(self) -> None:
        with httpx.stream("GET", self.url, headers=self.headers, params=self.params, timeout=WAIT_S) as resp:
            assert resp.status_code == 200, resp.read()
            self.connected.set()
            for arrived in frames(self._keep(resp.iter_text())):
                self.got.append(arrived)
            self.ended.set()

    def _keep(self, chunks: Iterator[str]) -> Iterator[str]:
        for chunk in chunks:
            self.raw += chunk
            yield chunk

    @property
    def ids(self) -> list[int | None]:
        return [f[0] for _, f in self.got]


@pytest.fixture
def pair(start_ashd: Callable[..., AshdProcess]) -> Iterator[tuple[AshdProcess, AshdProcess, str]]:
    with backend_database("postgres") as db:
        env = {"ASH_API_KEY": KEY, "ASH_SSE_HEARTBEAT_S": "1"}
        a = start_ashd(db, **env)
        b = start_ashd(db, **env)  # started before any turn (its start-up closes turns cut off by a crash)
        with httpx.Client(base_url=a.url, headers=HEADERS, timeout=WAIT_S) as c:
            c.post("/api/agents", json={"name": "hello", "path": str(HELLO_AGENT)}).raise_for_status()
            sid = c.post("/api/sessions", json={"agent": "hello"}).json()["session"]["id"]
        yield a, b, sid
        a.stop()
        b.stop()


def stored(daemon: AshdProcess, sid: str) -> list[Frame]:
    with httpx.Client(base_url=daemon.url, headers=HEADERS, timeout=WAIT_S) as c:
        return sse_frames(c.get(f"/api/sessions/{sid}/stream").text)


def test_a_stream_reconnected_to_another_daemon_gets_the_missed_events_then_the_live_turn(
        pair: tuple[AshdProcess, AshdProcess, str]) -> None:
    a, b, sid = pair
    with httpx.Client(base_url=a.url, headers=HEADERS, timeout=WAIT_S) as c, \
            c.stream("POST", f"/api/sessions/{sid}/messages",
                     json={"content": LONG_TURN, "includePartialMessages": True}) as resp:
        assert resp.status_code == 200
        on_a = frames(resp.iter_text())
        seen = read_to(on_a, "text_delta", 5)  # the client is in the middle of the turn ...
        mid = seen[-1][1][0]
        assert mid is not None
        seen += read_to(on_a, "text_delta", 3)  # ... A delivers more (the client missed them) ...
        on_b = Reader(b, sid, mid, follow=False)  # ... and it reconnects to B
        on_b.start()
        seen += read_to(on_a, "done")
    on_b.join(WAIT_S)
    assert on_b.ended.is_set()

    turn = [f for _, f in seen]
    assert [f for _, f in on_b.got] == [f for f in turn if f[0] is not None and f[0] > mid]  # same ids, data
    assert turn[-1][1] == "done" and on_b.got[-1][1][1] == "done"
    text = "".join(d["delta"] for _, n, d in turn if n == "text_delta")
    assert text.startswith("a0 a1") and text.endswith("b18 b19")
    a_done = seen[-1][0]
    assert on_b.got[0][0] < a_done  # B was following the turn while it ran, not replaying it afterwards
    assert ": keep-alive" in on_b.raw  # heartbeats while the turn paused
    assert turn == [f for f in stored(a, sid) if f[0] is not None and f[0] >= turn[0][0]]  # A stored it all


def test_following_on_another_daemon_takes_the_next_turn_started_on_the_first(
        pair: tuple[AshdProcess, AshdProcess, str]) -> None:
    a, b, sid = pair
    with httpx.Client(base_url=a.url, headers=HEADERS, timeout=WAIT_S) as c:
        with c.stream("POST", f"/api/sessions/{sid}/messages", json={"content": "[[say: turn-one]]"}) as resp:
            first = [f for _, f in frames(resp.iter_text())]
        on_b = Reader(b, sid, 0, follow=True)
        on_b.start()
        assert on_b.connected.wait(WAIT_S)
        deadline = time.monotonic() + WAIT_S
        while len(on_b.got) < len(first) and time.monotonic() < deadline:
            time.sleep(0.05)  # B replayed the first turn and now waits between turns
        with c.stream("POST", f"/api/sessions/{sid}/messages", json={"content": "[[say: turn-two]]"}) as resp:
            second = [f for _, f in frames(resp.iter_text())]
        while len(on_b.got) < len(first) + len(second) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not on_b.ended.is_set()  # following: open between turns
        c.delete(f"/api/sessions/{sid}").raise_for_status()
    on_b.join(WAIT_S)
    assert on_b.ended.is_set()  # the session ended, so did the follow (B re-reads its status)
    assert [f for _, f in on_b.got] == first + second
    assert second[0][1] == "session_start" and second[-1][1] == "done"
    ids = on_b.ids
    assert ids == sorted(set(ids))  # no duplicate, increasing
