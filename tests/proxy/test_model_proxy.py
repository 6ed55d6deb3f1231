"""The model proxy against the scripted model: token check, key injection, metering, budget."""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ashd.scripted.server import ScriptedModel
from tests.support.model_proxy import REAL_KEY, Harness, read_to_close, status_of


@pytest.fixture
def model() -> Iterator[ScriptedModel]:
    with ScriptedModel() as m:
        yield m


@pytest.fixture
def harness(model: ScriptedModel) -> Iterator[Harness]:
    h = Harness(model.base_url)
    yield h
    h.close()


def test_injects_the_real_key_and_strips_the_token(harness: Harness, model: ScriptedModel) -> None:
    status, body = harness.post("[[say: hello through the proxy]]")
    assert status == 200, body
    assert _text(body) == "hello through the proxy"
    seen = [r for r in model.requests() if r.path == "/v1/messages"][-1]
    assert seen.x_api_key_sha256 == hashlib.sha256(REAL_KEY.encode()).hexdigest()
    assert seen.authorization_sha256 is None  # the client's Authorization was stripped


def test_wrong_token_is_refused_before_the_upstream(harness: Harness, model: ScriptedModel) -> None:
    model.clear()
    status, body = harness.post("[[say: nope]]", key="sk-guess")
    assert status == 401 and b"invalid session token" in body
    status, _ = harness.post("[[say: nope]]", key=REAL_KEY)  # even the real key is not a token
    assert status == 401
    assert model.requests() == []


def test_only_messages_routes_are_served(harness: Harness, model: ScriptedModel) -> None:
    model.clear()
    status, _ = harness.post("x", path="/v1/files")
    assert status == 404
    assert model.requests() == []


@pytest.mark.parametrize("stream", [True, False])
def test_usage_is_metered_per_session(harness: Harness, stream: bool) -> None:
    status, _ = harness.post("[[usage: in=1000 out=500]] [[say: metered]]", stream=stream)
    assert status == 200
    assert harness.metered.wait(5)
    gate, usage = harness.usage[-1]
    assert gate.session_id == "s1" and gate.tenant_id == "t1"
    assert (usage.input_tokens, usage.output_tokens) == (1000, 500)
    assert usage.cost_usd > 0 and gate.spent_usd == pytest.approx(usage.cost_usd)


def test_budget_stops_the_session_at_the_proxy(model: ScriptedModel) -> None:
    h = Harness(model.base_url, budget=0.001)
    try:
        status, _ = h.post("[[usage: in=100000 out=100]] [[say: expensive]]")
        assert status == 200
        model.clear()
        status, body = h.post("[[say: one more]]")
        assert status == 400 and b"budget exhausted" in body
        assert model.requests() == []
    finally:
        h.close()


def test_a_turns_own_budget_binds_for_that_turn_only(harness: Harness, model: ScriptedModel) -> None:
    """Issue #13.1: a message's maxBudgetUsd stops its turn at the proxy; what earlier turns
    spent does not count, and the next turn (no budget) goes through again."""
    assert harness.post("[[usage: in=100000 out=100]] [[say: an earlier turn]]")[0] == 200
    harness.proxy.limit_turn("sb1", 0.001)
    assert harness.post("[[usage: in=100000 out=100]] [[say: first of the turn]]")[0] == 200
    model.clear()
    status, body = harness.post("[[say: over the turn's budget]]")
    assert status == 400 and b"turn budget exhausted" in body and b"maxBudgetUsd" in body
    assert model.requests() == []
    harness.proxy.limit_turn("sb1", None)
    assert harness.post("[[say: the next turn]]")[0] == 200


def test_revoked_token_and_closed_listener(model: ScriptedModel) -> None:
    h = Harness(model.base_url)
    h.proxy.unregister("sb1")
    with pytest.raises(OSError):
        h.post("[[say: after]]")
    h.loop.stop()


def _sse(body: bytes) -> list[dict[str, Any]]:
    return [json.loads(line[5:]) for line in body.split(b"\n") if line.startswith(b"data:")]


def _text(body: bytes) -> str:
    return "".join(e["delta"].get("text", "") for e in _sse(body) if e["type"] == "content_block_delta")


def test_response_is_streamed_not_buffered(harness: Harness) -> None:
    """With [[slow]], the first event arrives long before the last one is sent."""
    conn = http.client.HTTPConnection("127.0.0.1", harness.port, timeout=10)
    body = json.dumps({"model": "m", "max_tokens": 10, "stream": True,
                       "messages": [{"role": "user", "content": "[[slow: 300]] [[say: a b c d e f]]"}]})
    conn.request("POST", "/v1/messages", body=body, headers={"x-api-key": harness.token})
    resp = conn.getresponse()
    start = time.monotonic()
    first = resp.read1(65536)
    first_at = time.monotonic() - start
    rest = resp.read()
    total = time.monotonic() - start
    conn.close()  # the reply keeps the connection alive: the client closes it
    assert first.startswith(b"event:") and first_at < total / 2, (first_at, total)
    assert _sse(first + rest)[-1]["type"] == "message_stop"


LONG_TEXT = " ".join(f"word{i:04d}" for i in range(500))  # ~4500 characters, 64 streamed pieces


def _open_stream(harness: Harness, prompt: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", harness.port), timeout=30)
    sock.sendall(harness.request_bytes("POST", "/v1/messages?beta=true", prompt, stream=True))
    return sock


def _wait_for(predicate: Callable[[], bool], what: str, deadline_s: float = 30.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_client_that_disconnects_mid_stream_is_charged_for_what_was_relayed(
        harness: Harness, model: ScriptedModel) -> None:
    sock = _open_stream(harness, f"[[usage: in=20000 out=900]] [[slow: 30]] [[say: {LONG_TEXT}]]")
    with sock:
        seen = b""
        while b"content_block_delta" not in seen:
            chunk = sock.recv(4096)
            assert chunk, seen
            seen += chunk
    # gone before message_delta ever reported the output tokens
    assert harness.metered.wait(30), "an early disconnect must still be metered"
    _, usage = harness.usage[-1]
    assert usage.input_tokens == 20000 and usage.output_tokens >= 1
    assert harness.gate.spent_usd == pytest.approx(usage.cost_usd) and usage.cost_usd >= 20000 * 3 / 1e6
    _wait_for(lambda: any(r.disconnected for r in model.requests()), "the proxy to drop the upstream")


def test_a_reply_that_crosses_the_budget_is_stopped_with_an_error_event(model: ScriptedModel) -> None:
    # message_start alone costs $0.003 (1000 input tokens); the text is ~1100 tokens ($0.017).
    h = Harness(model.base_url, budget=0.006)
    try:
        model.clear()
        status, body = h.post(f"[[usage: in=1000 out=1200]] [[slow: 5]] [[say: {LONG_TEXT}]]")
        assert status == 200
        events = _sse(body)
        assert events[0]["type"] == "message_start"
        assert events[-1]["type"] == "error" and "budget exhausted" in events[-1]["error"]["message"]
        assert not any(e["type"] == "message_stop" for e in events)
        assert 0 < len(_text(body)) < len(LONG_TEXT) // 2
        assert h.metered.wait(10)
        assert 0.006 <= h.gate.spent_usd < 0.01
        _wait_for(lambda: any(r.disconnected for r in model.requests()), "the proxy to stop the upstream reply")
        model.clear()
        status, body = h.post("[[say: more]]")  # refused before forwarding
        assert status == 400 and b"budget exhausted" in body and model.requests() == []
    finally:
        h.close()


def test_connections_over_the_cap_are_refused_at_once(model: ScriptedModel) -> None:
    h = Harness(model.base_url, max_connections=3)
    held = [socket.create_connection(("127.0.0.1", h.port), timeout=30) for _ in range(3)]
    try:
        extra = h.raw(h.request_bytes("POST", "/v1/messages", "[[say: over the cap]]"))
        assert status_of(extra) == 429 and b"too many open connections" in extra
        held.pop().close()
        deadline = time.monotonic() + 30
        while (status := h.post("[[say: a slot is free again]]")[0]) == 429 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert status == 200
    finally:
        for sock in held:
            sock.close()
        h.close()


def test_a_silent_connection_is_closed(model: ScriptedModel) -> None:
    h = Harness(model.base_url, idle_timeout_s=1)
    try:
        with socket.create_connection(("127.0.0.1", h.port), timeout=30) as sock:
            assert read_to_close(sock) == b""  # closed by the proxy, not by the 30 s socket timeout
    finally:
        h.close()


def test_a_stream_that_keeps_moving_outlives_the_idle_timeout(model: ScriptedModel) -> None:
    h = Harness(model.base_url, idle_timeout_s=3)
    try:
        status, body = h.post(f"[[slow: 100]] [[say: {LONG_TEXT}]]")  # ~6 s in all, 100 ms between events
        assert status == 200 and _text(body) == LONG_TEXT
    finally:
        h.close()


def test_unregister_closes_the_sandboxs_open_connections(model: ScriptedModel) -> None:
    h = Harness(model.base_url)
    with socket.create_connection(("127.0.0.1", h.port), timeout=30) as sock:
        sock.sendall(b"POST /v1/mess")  # admitted, mid-head
        _wait_for(lambda: h.proxy.connections.count("sb1") == 1, "the proxy to admit the connection")
        h.proxy.unregister("sb1")
        assert read_to_close(sock) == b""
    h.loop.stop()


def test_the_cli_probe_is_answered_locally(harness: Harness, model: ScriptedModel) -> None:
    model.clear()
    answer = harness.raw(b"HEAD /api/hello HTTP/1.1\r\nhost: x\r\n\r\n")
    assert status_of(answer) == 200
    assert model.requests() == []


def test_the_cli_connection_and_the_upstream_one_are_kept_alive(harness: Harness, model: ScriptedModel) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", harness.port, timeout=30)
    kept = []
    try:
        for stream in (True, False, True):
            conn.request("POST", "/v1/messages", body=_body("[[say: again]]", stream),
                         headers={"x-api-key": harness.token, "content-type": "application/json"})
            resp = conn.getresponse()
            assert resp.status == 200 and resp.getheader("connection") == "keep-alive"
            data = resp.read()
            assert _text(data) == "again" if stream else json.loads(data)["content"][0]["text"] == "again"
            kept.append(harness.loop.call(_idle_upstreams(harness)))
        assert harness.proxy.connections.count("sb1") == 1  # one CLI connection carried all three
        assert len(kept[0]) == 1 and kept[0] == kept[1] == kept[2]  # one upstream connection, reused
    finally:
        conn.close()


def test_a_refused_request_closes_the_connection(harness: Harness) -> None:
    reply = harness.raw(harness.request_bytes("POST", "/v1/messages", extra="x-api-key: wrong\r\n")
                        .replace(f"x-api-key: {harness.token}\r\n".encode(), b""))
    assert b" 401 " in reply.split(b"\r\n", 1)[0] and b"connection: close" in reply.lower()


def _body(prompt: str, stream: bool) -> str:
    return json.dumps({"model": "m", "max_tokens": 10, "stream": stream,
                       "messages": [{"role": "user", "content": prompt}]})


async def _idle_upstreams(harness: Harness) -> list[int]:
    return [id(c) for c in harness.proxy._upstream._idle]  # the seam: the proxy loop's kept connections
