"""Issue #15: the model proxy forwards exactly the Messages API. Every other path - traversal,
percent-encoded dots and slashes, other Anthropic routes - gets a 4xx from the proxy and never
reaches the upstream: the upstream's TCP listener counts no connection and the scripted
model records no request. Raw sockets, so nothing normalises the request line on the way."""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ashd.scripted.server import ScriptedModel
from tests.security.conftest import Agent
from tests.support.cutting_proxy import CuttingProxy, cutting_proxy
from tests.support.daemon import AshdProcess
from tests.support.model_proxy import REAL_KEY, Harness, status_of

BAD_TARGETS = [
    "/v1/messages/../../v1/files",
    "/v1/messages/%2e%2e/%2e%2e/v1/files",
    "/v1/messages/%2E%2E/%2E%2E/v1/files",
    "/v1/messages/.%2e/.%2E/v1/files",
    "/v1/messages%2f..%2f..%2fv1%2ffiles",
    "/v1/messages%2f..",
    "/v1/messages%2F..",
    "/v1/messages%5c..%5cfiles",
    "/v1/messages\\..\\files",
    "/v1/messages/./count_tokens",
    "/v1/messages/.",
    "/v1/messages/batches",
    "/v1/messages/batches/msgbatch_1/results",
    "/v1/files",
    "/v1/files?x=/v1/messages",
    "/v1/models",
    "/v1/complete",
    "//v1/messages",
    "/v1//messages",
    "/v1/messages/",
    "/V1/MESSAGES",
    "/v1/m%65ssages",
    "/api/hello/../../v1/files",
    "/v1/messages#/../files",
    "http://127.0.0.1/v1/files",
    "*",
]


@pytest.fixture(scope="module")
def counted_upstream() -> Iterator[tuple[ScriptedModel, CuttingProxy]]:
    with ScriptedModel() as model, cutting_proxy(int(model.base_url.rsplit(":", 1)[1]), {}) as counter:
        yield model, counter


@pytest.fixture
def upstream(counted_upstream: tuple[ScriptedModel, CuttingProxy]) -> tuple[ScriptedModel, CuttingProxy]:
    model, counter = counted_upstream
    model.clear()
    counter.connections = 0
    return counted_upstream


@pytest.fixture
def harness(upstream: tuple[ScriptedModel, CuttingProxy]) -> Iterator[Harness]:
    h = Harness(f"http://127.0.0.1:{upstream[1].port}")
    yield h
    h.close()


def _nothing_reached(upstream: tuple[ScriptedModel, CuttingProxy]) -> None:
    model, counter = upstream
    assert counter.connections == 0, "the proxy opened a connection to the upstream"
    assert model.requests() == []


@pytest.mark.parametrize("target", BAD_TARGETS)
@pytest.mark.parametrize("method", ["POST", "GET"])
def test_other_paths_never_reach_the_upstream(harness: Harness, upstream: tuple[ScriptedModel, CuttingProxy],
                                              method: str, target: str) -> None:
    answer = harness.raw(harness.request_bytes(method, target))
    assert 400 <= status_of(answer) < 500, answer[:300]
    message = json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["message"]
    assert "/v1/messages" in message or "path" in message or "request" in message, message
    _nothing_reached(upstream)


@pytest.mark.parametrize("extra", [
    "transfer-encoding: chunked\r\n",                  # both framings: two parsers could disagree
    "transfer-encoding: gzip, chunked\r\n",
])
def test_ambiguous_framing_never_reaches_the_upstream(harness: Harness, upstream: tuple[ScriptedModel, CuttingProxy],
                                                      extra: str) -> None:
    answer = harness.raw(harness.request_bytes("POST", "/v1/messages", extra=extra))
    assert status_of(answer) == 400, answer[:300]
    _nothing_reached(upstream)


def test_over_budget_is_refused_before_forwarding(upstream: tuple[ScriptedModel, CuttingProxy]) -> None:
    h = Harness(f"http://127.0.0.1:{upstream[1].port}", budget=0.01)
    try:
        h.gate.spent_usd = 0.01
        answer = h.raw(h.request_bytes("POST", "/v1/messages", "[[say: one more]]"))
        assert status_of(answer) == 400 and b"budget exhausted" in answer
        _nothing_reached(upstream)
    finally:
        h.close()


@pytest.mark.parametrize("target", ["/v1/messages", "/v1/messages?beta=true", "/v1/messages/count_tokens"])
def test_the_messages_api_is_forwarded_with_the_real_key(harness: Harness, upstream: tuple[ScriptedModel,
                                                         CuttingProxy], target: str) -> None:
    answer = harness.raw(harness.request_bytes("POST", target))
    assert status_of(answer) == 200, answer[:300]
    model, counter = upstream
    seen = model.requests()[-1]
    assert counter.connections == 1 and seen.path == target.split("?")[0]
    assert seen.x_api_key_sha256 == hashlib.sha256(REAL_KEY.encode()).hexdigest()


LONG_TEXT = " ".join(f"word{i:04d}" for i in range(500))


def test_the_real_cli_is_stopped_at_its_budget_mid_reply(tmp_path: Path) -> None:
    """Through a running ashd, the agent's own CLI: a reply that crosses maxBudgetUsd ends early
    with the budget named, and the next turn never reaches the upstream, nor one in a new sandbox."""
    agent = tmp_path / "agent"
    (agent / ".ashd").mkdir(parents=True)
    (agent / "CLAUDE.md").write_text("You are the budget test agent.\n")
    (agent / ".ashd" / "sandbox.json").write_text(json.dumps({"maxBudgetUsd": 0.0005}))
    mount_root = Path("/run") / f"ashd-budget-{uuid.uuid4().hex[:8]}"
    with ScriptedModel() as model:
        daemon = AshdProcess(tmp_path / "data", model.base_url, None,
                             {"ASH_SANDBOX_MOUNT_ROOT": str(mount_root)}).start()
        try:
            client = httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=60)
            client.post("/api/agents", json={"name": "budget", "path": str(agent)}).raise_for_status()
            resp = client.post("/api/sessions", json={"agent": "budget"})
            assert resp.status_code == 201, resp.text
            session = Agent(client, resp.json()["session"]["id"])
            events = session.turn(f"[[usage: in=1 out=2000]] [[slow: 5]] [[say: {LONG_TEXT}]]")
            text = json.dumps(events)
            assert "budget exhausted" in text, events
            assert "word0499" not in text  # the reply was stopped, not relayed whole
            assert any(r.disconnected for r in model.requests() if r.path == "/v1/messages")
            model.clear()
            events = session.turn("[[say: after the budget]]")
            assert "budget exhausted" in json.dumps(events) and "after the budget" not in json.dumps(
                [d for n, d in events if n not in ("error", "done")])
            assert [r for r in model.requests() if r.path == "/v1/messages"] == []
            # A new sandbox for the session (stop, then a cold resume): the budget spans it too.
            assert client.post(f"/api/sessions/{session.sid}/stop").status_code == 200
            assert client.post(f"/api/sessions/{session.sid}/resume").status_code == 200
            events = session.turn("[[say: after a new sandbox]]")
            assert "budget exhausted" in json.dumps(events) and "after a new sandbox" not in json.dumps(
                [d for n, d in events if n not in ("error", "done")])
            assert [r for r in model.requests() if r.path == "/v1/messages"] == []
            client.close()
        finally:
            daemon.stop(timeout=120)
            with contextlib.suppress(OSError):
                mount_root.rmdir()  # ashd removes what it made inside; the root is this test's
