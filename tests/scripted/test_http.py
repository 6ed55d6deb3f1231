"""The scripted model over real HTTP (httpx against a started ScriptedModel)."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import httpx
import pytest

from ashd.scripted import ScriptedModel

KEY = "sk-test-secret"
HEADERS = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}


def request_body(text: str, stream: bool = True, **extra: Any) -> dict[str, Any]:
    message = {"role": "user", "content": [{"type": "text", "text": text}]}
    return {
        "model": "claude-test",
        "max_tokens": 100,
        "stream": stream,
        "messages": [message],
        **extra,
    }


def stream_events(model: ScriptedModel, text: str) -> list[tuple[str, dict[str, Any], float]]:
    """POST a streaming request; return (event name, data, arrival time) per SSE event."""
    events: list[tuple[str, dict[str, Any], float]] = []
    url = model.base_url + "/v1/messages?beta=true"
    with httpx.stream("POST", url, json=request_body(text), headers=HEADERS) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        name = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = json.loads(line.removeprefix("data: "))
                assert data["type"] == name
                events.append((name, data, time.monotonic()))
    return events


def deltas(events: list[tuple[str, dict[str, Any], float]], kind: str) -> list[dict[str, Any]]:
    return [
        d["delta"]
        for n, d, _ in events
        if n == "content_block_delta" and d["delta"]["type"] == kind
    ]


def test_text_stream_event_order_and_several_deltas(model: ScriptedModel) -> None:
    events = stream_events(model, "[[say: hello scripted streaming world]]")
    names = [name for name, _, _ in events]
    assert names[:2] == ["message_start", "content_block_start"]
    assert names[-4:] == [
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    texts = [d["text"] for d in deltas(events, "text_delta")]
    assert len(texts) >= 4
    assert "".join(texts) == "hello scripted streaming world"
    start = events[0][1]["message"]
    assert (start["model"], start["role"], start["usage"]["input_tokens"]) == (
        "claude-test",
        "assistant",
        11,
    )
    final = events[-2][1]
    assert final["delta"]["stop_reason"] == "end_turn"
    assert final["usage"]["output_tokens"] == 7


def test_slow_directive_spreads_deltas_over_time(model: ScriptedModel) -> None:
    events = stream_events(model, "[[slow: 40]] [[say: one two three four]]")
    arrivals = [t for name, d, t in events if name == "content_block_delta"]
    assert len(arrivals) == 4
    # Each delta is flushed on its own: the last arrives well after the first.
    assert arrivals[-1] - arrivals[0] >= 0.1


def test_tool_use_block(model: ScriptedModel) -> None:
    events = stream_events(
        model,
        '[[say: running]] [[tool: Write {"file_path": "/w/a", "content": "data"}]] '
        "[[say: never in this response]]",
    )
    blocks = [d["content_block"] for n, d, _ in events if n == "content_block_start"]
    assert [b["type"] for b in blocks] == ["text", "tool_use"]
    assert blocks[1]["name"] == "Write" and blocks[1]["id"].startswith("toolu_")
    partial = "".join(d["partial_json"] for d in deltas(events, "input_json_delta"))
    assert json.loads(partial) == {"file_path": "/w/a", "content": "data"}
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_thinking_block(model: ScriptedModel) -> None:
    events = stream_events(model, "[[think: weighing options carefully]] [[say: done]]")
    thinking = "".join(d["thinking"] for d in deltas(events, "thinking_delta"))
    assert thinking == "weighing options carefully"
    signatures = deltas(events, "signature_delta")
    assert len(signatures) == 1 and signatures[0]["signature"]


@pytest.mark.parametrize(
    ("status", "error_type"), [(529, "overloaded_error"), (403, "permission_error")]
)
def test_error_directive(model: ScriptedModel, status: int, error_type: str) -> None:
    response = httpx.post(
        model.base_url + "/v1/messages", json=request_body(f"[[error: {status} scripted failure]]")
    )
    assert response.status_code == status
    assert response.json() == {
        "type": "error",
        "error": {"type": error_type, "message": "scripted failure"},
    }
    assert response.headers["request-id"].startswith("req_")


def test_error_after_text_is_an_sse_error_event(model: ScriptedModel) -> None:
    events = stream_events(model, "[[say: partial]] [[error: 529 overloaded mid-stream]]")
    assert [n for n, _, _ in events][-2:] == ["content_block_stop", "error"]
    assert events[-1][1]["error"] == {
        "type": "overloaded_error",
        "message": "overloaded mid-stream",
    }


def test_title_request_streaming_and_not(model: ScriptedModel) -> None:
    fmt = {
        "type": "json_schema",
        "schema": {"type": "object", "properties": {"title": {"type": "string"}}},
    }
    body = request_body(
        "<session>\n[[error: 500]]\n</session>", stream=False, output_config={"format": fmt}
    )
    response = httpx.post(model.base_url + "/v1/messages?beta=true", json=body)
    assert response.status_code == 200
    assert json.loads(response.json()["content"][0]["text"]) == {"title": "Scripted session"}


def test_non_streaming_request(model: ScriptedModel) -> None:
    response = httpx.post(
        model.base_url + "/v1/messages",
        json=request_body("[[think: t]] [[bash: ls]]", stream=False),
    )
    message = response.json()
    assert response.status_code == 200
    assert [b["type"] for b in message["content"]] == ["thinking", "tool_use"]
    assert message["content"][1]["input"] == {"command": "ls", "description": "scripted"}
    assert message["stop_reason"] == "tool_use"
    assert message["usage"]["output_tokens"] == 7


def test_requests_are_recorded_without_secrets(model: ScriptedModel) -> None:
    httpx.head(model.base_url + "/api/hello")
    httpx.post(
        model.base_url + "/v1/messages?beta=true",
        json=request_body("hi", stream=False),
        headers={**HEADERS, "authorization": "Bearer tok-1"},
    )
    head, post = model.requests()
    assert (head.method, head.path, head.status) == ("HEAD", "/api/hello", 200)
    assert (post.method, post.path, post.query, post.status) == (
        "POST",
        "/v1/messages",
        "beta=true",
        200,
    )
    assert post.x_api_key_sha256 == hashlib.sha256(KEY.encode()).hexdigest()
    assert post.authorization_sha256 == hashlib.sha256(b"Bearer tok-1").hexdigest()
    assert "x-api-key" not in post.headers and "authorization" not in post.headers
    assert post.headers["anthropic-version"] == "2023-06-01"
    assert post.body["messages"][0]["content"][0]["text"] == "hi"

    listed = httpx.get(model.base_url + "/_scripted/requests").json()
    assert [r["path"] for r in listed] == ["/api/hello", "/v1/messages"]
    assert KEY not in json.dumps(listed)
    assert httpx.delete(model.base_url + "/_scripted/requests").status_code == 204
    assert model.requests() == []


def test_probe_models_health_and_unknown_routes(model: ScriptedModel) -> None:
    base = model.base_url
    assert httpx.get(base + "/api/hello").status_code == 200
    assert httpx.get(base + "/v1/models").json()["data"][0]["id"] == "claude-scripted"
    assert httpx.get(base + "/_scripted/health").json() == {"status": "ok", "requests": 2}
    counted = httpx.post(base + "/v1/messages/count_tokens", json=request_body("hi"))
    assert counted.json() == {"input_tokens": 11}
    missing = httpx.post(base + "/v1/nothing", json={})
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found_error"
    assert model.requests()[-1].path == "/v1/nothing"


def test_client_disconnect_during_sleep_is_recorded(model: ScriptedModel) -> None:
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            model.base_url + "/v1/messages", json=request_body("[[sleep: 5000]] hi"), timeout=0.2
        )
    deadline = time.monotonic() + 3
    while not model.requests()[0].disconnected and time.monotonic() < deadline:
        time.sleep(0.01)
    assert model.requests()[0].disconnected


def test_stop_does_not_wait_for_a_sleeping_response() -> None:
    model = ScriptedModel()
    base = model.start()
    with httpx.Client(timeout=10) as client:
        with client.stream(
            "POST",
            base + "/v1/messages",
            json=request_body("[[say: a]] [[sleep: 20000]] [[say: b]]"),
        ) as resp:
            lines = resp.iter_lines()
            assert next(line for line in lines if "text_delta" in line)
            started = time.monotonic()
            model.stop()
            assert time.monotonic() - started < 3
    with pytest.raises(httpx.TransportError):
        httpx.get(base + "/_scripted/health", timeout=1)
