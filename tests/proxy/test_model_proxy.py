"""The model proxy against the scripted model: token check, key injection, metering, budget."""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ashd.proxy.loop import ProxyLoop
from ashd.proxy.meter import Usage
from ashd.proxy.model import Gate, ModelProxy
from ashd.scripted.server import ScriptedModel

REAL_KEY = "sk-real-key-for-proxy-tests"


class Harness:
    def __init__(self, model: ScriptedModel, budget: float | None = None) -> None:
        self.loop = ProxyLoop()
        self.usage: list[tuple[Gate, Usage]] = []
        self.metered = threading.Event()
        self.proxy = ModelProxy(self.loop, model.base_url, REAL_KEY, "", self._on_usage)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self.token = self.proxy.register("sb1", sock, {"session_id": "s1", "tenant_id": "t1",
                                                       "agent_name": "a", "budget_usd": budget})

    def _on_usage(self, gate: Gate, usage: Usage) -> None:
        self.usage.append((gate, usage))
        self.metered.set()

    def post(self, prompt: str, key: str | None = None, stream: bool = True,
             path: str = "/v1/messages") -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        body = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 100, "stream": stream,
                           "messages": [{"role": "user", "content": prompt}]})
        headers = {"content-type": "application/json", "x-api-key": key if key is not None else self.token,
                   "authorization": "Bearer should-be-stripped"}
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp.status, data

    def close(self) -> None:
        self.proxy.unregister("sb1")
        self.loop.stop()


@pytest.fixture
def model() -> Iterator[ScriptedModel]:
    with ScriptedModel() as m:
        yield m


@pytest.fixture
def harness(model: ScriptedModel) -> Iterator[Harness]:
    h = Harness(model)
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
    h = Harness(model, budget=0.001)
    try:
        status, _ = h.post("[[usage: in=100000 out=100]] [[say: expensive]]")
        assert status == 200
        model.clear()
        status, body = h.post("[[say: one more]]")
        assert status == 400 and b"budget exhausted" in body
        assert model.requests() == []
    finally:
        h.close()


def test_revoked_token_and_closed_listener(model: ScriptedModel) -> None:
    h = Harness(model)
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
    assert first.startswith(b"event:") and first_at < total / 2, (first_at, total)
    assert _sse(first + rest)[-1]["type"] == "message_stop"
