"""Issue #3: event ids and replay, one turn at a time, interrupt, disconnects, ashd restarts."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

import httpx
import pytest

from tests.conftest import HELLO_AGENT
from tests.support.daemon import AshdProcess, sse_frames

pytestmark = pytest.mark.e2e
SLOW = "[[slow: 30]] [[say: " + " ".join(f"w{i}" for i in range(120)) + "]]"


def setup_session(c: httpx.Client) -> str:
    c.post("/api/agents", json={"name": "hello", "path": str(HELLO_AGENT)}).raise_for_status()
    return str(c.post("/api/sessions", json={"agent": "hello"}).json()["session"]["id"])


def post_stream(c: httpx.Client, sid: str, content: str) -> list[tuple[int | None, str, object]]:
    with c.stream("POST", f"/api/sessions/{sid}/messages", json={"content": content, "includePartialMessages": True},
                  timeout=120) as r:
        assert r.status_code == 200, r.read()
        return sse_frames(r.read().decode())


def replay(c: httpx.Client, sid: str, last_id: int | None = None,
           **params: int) -> list[tuple[int | None, str, object]]:
    headers = {} if last_id is None else {"Last-Event-ID": str(last_id)}
    with c.stream("GET", f"/api/sessions/{sid}/stream", headers=headers, params=params, timeout=120) as r:
        assert r.status_code == 200, r.read()
        return sse_frames(r.read().decode())


def read_until(c: httpx.Client, sid: str, content: str, count: int) -> list[tuple[int | None, str, object]]:
    """Read ``count`` frames of a new turn, then drop the connection."""
    got: list[tuple[int | None, str, object]] = []
    buffer = ""
    with c.stream("POST", f"/api/sessions/{sid}/messages", json={"content": content, "includePartialMessages": True},
                  timeout=120) as r:
        for chunk in r.iter_text():
            buffer += chunk
            complete, _, buffer = buffer.rpartition("\n\n")
            got += sse_frames(complete) if complete else []
            if len(got) >= count:
                break
    return got[:count]


def test_ids_replay_after_disconnect_and_turn_survives(ashd_sqlite: AshdProcess) -> None:
    with httpx.Client(base_url=ashd_sqlite.url, headers=ashd_sqlite.headers, timeout=60) as c:
        sid = setup_session(c)
        first = post_stream(c, sid, "[[say: one]]")
        ids = [i for i, _, _ in first]
        assert ids == list(range(1, len(ids) + 1)) and first[-1][1] == "done"

        seen = read_until(c, sid, SLOW, 6)  # then the client goes away mid-turn
        assert seen[0][0] == ids[-1] + 1 and seen[0][1] == "session_start"
        rest = replay(c, sid, last_id=seen[-1][0])  # follows the live turn to its end
        assert rest[-1][1] == "done"
        whole = replay(c, sid, after=ids[-1])
        assert [f[0] for f in seen + rest] == [f[0] for f in whole]  # each missed event exactly once
        assert seen + rest == whole
        assert any(n == "turn_complete" and "w119" in d["result"] for _, n, d in whole)  # the turn finished
        messages = c.get(f"/api/sessions/{sid}/messages").json()["messages"]
        assert "w119" in messages[-1]["content"]  # and was stored although its client left

        # Bad replay requests are refused clearly.
        r = c.get(f"/api/sessions/{sid}/stream", headers={"Last-Event-ID": "abc"})
        assert r.status_code == 400 and "Last-Event-ID" in r.json()["error"]


def test_one_turn_at_a_time_and_interrupt(ashd_sqlite: AshdProcess) -> None:
    with httpx.Client(base_url=ashd_sqlite.url, headers=ashd_sqlite.headers, timeout=60) as c:
        sid = setup_session(c)
        started = threading.Event()
        result: list[list[tuple[int | None, str, object]]] = []

        def long_turn() -> None:
            frames = []
            with c.stream("POST", f"/api/sessions/{sid}/messages",
                          json={"content": SLOW, "includePartialMessages": True}) as r:
                buffer = ""
                for chunk in r.iter_text():
                    buffer += chunk
                    if "text_delta" in buffer:
                        started.set()
                frames = sse_frames(buffer)
            result.append(frames)

        worker = threading.Thread(target=long_turn)
        worker.start()
        assert started.wait(60)
        second = c.post(f"/api/sessions/{sid}/messages", json={"content": "[[say: sneaky]]"})
        assert second.status_code == 409 and "already running" in second.json()["error"]
        interrupted = c.post(f"/api/sessions/{sid}/interrupt")
        assert interrupted.status_code == 200, interrupted.text
        worker.join(60)
        frames = result[0]
        assert frames[-1][1] == "done"
        final = [d for _, n, d in frames if n == "message" and d.get("type") == "result"][-1]
        assert final["subtype"] == "error_during_execution"
        assert not any(n == "text_delta" and "w119" in d["delta"] for _, n, d in frames)

        after = post_stream(c, sid, "[[say: still here]]")
        assert ("turn_complete", {"numTurns": 1, "result": "still here"}) in [(n, d) for _, n, d in after]
        assert c.post(f"/api/sessions/{sid}/interrupt").status_code == 409  # nothing running now


def test_replay_after_ashd_is_killed_mid_turn(start_ashd: Callable[..., AshdProcess], database_url: str | None) -> None:
    daemon = start_ashd(database_url)
    with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=60) as c:
        sid = setup_session(c)
        done_turn = post_stream(c, sid, "[[bash: echo kept > kept.txt]] [[say: remember alpha-7]]")
        seen = read_until(c, sid, SLOW, 8)
    daemon.stop(signal.SIGKILL)

    again = daemon.restarted()
    try:
        with httpx.Client(base_url=again.url, headers=again.headers, timeout=60) as c:
            assert again.key == daemon.key
            assert c.get(f"/api/sessions/{sid}").json()["session"]["status"] == "active"
            rest = replay(c, sid, last_id=seen[-1][0])
            whole = replay(c, sid, after=done_turn[-1][0])
            assert [f[0] for f in seen + rest] == [f[0] for f in whole]  # exactly once, no gap
            assert [n for _, n, _ in rest[-2:]] == ["error", "done"], (seen, rest)  # the cut-off turn is closed
            assert replay(c, sid, after=0)[: len(done_turn)] == done_turn  # older turns unchanged

            frames = post_stream(c, sid, "[[bash: cat kept.txt]] [[echo-history]]")
            result = [d for _, n, d in frames if n == "turn_complete"][-1]["result"]
            assert "remember alpha-7" in result  # conversation restored
            assert any(n == "tool_result" and "kept" in d["content"] for _, n, d in frames)  # files too
    finally:
        again.stop()


def test_idle_streams_get_heartbeats(start_ashd: Callable[..., AshdProcess]) -> None:
    daemon = start_ashd(None, ASH_SSE_HEARTBEAT_S="0.2")
    with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=60) as c:
        sid = setup_session(c)
        with c.stream("POST", f"/api/sessions/{sid}/messages", json={"content": "[[sleep: 1500]] [[say: late]]"}) as r:
            body = r.read().decode()
    assert body.count(": keep-alive\n\n") >= 3  # comments while the model was silent
    frames = sse_frames(body)  # and clients that ignore comments see the usual events
    assert frames[-1][1] == "done" and ("turn_complete" in [n for _, n, _ in frames])
