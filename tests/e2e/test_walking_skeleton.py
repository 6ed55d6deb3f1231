"""Issue #2 acceptance: deploy -> create -> stream -> history -> tool call -> end.

Everything is real: an ashd process, the bridge, the claude CLI via the SDK, the scripted
model, and SQLite or a fresh Postgres database.
"""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

import httpx
import pytest

from ashd.scripted.server import ScriptedModel
from tests.conftest import HELLO_AGENT
from tests.support.daemon import AshdProcess, agent_processes, sse_events

pytestmark = pytest.mark.e2e


def upload_body(name: str, folder: Path) -> dict[str, object]:
    files = [
        {"path": str(p.relative_to(folder)), "content": base64.b64encode(p.read_bytes()).decode()}
        for p in sorted(folder.rglob("*")) if p.is_file()
    ]
    return {"name": name, "files": files}


def send(client: httpx.Client, session_id: str, content: str, **extra: object) -> list[tuple[str, object]]:
    with client.stream("POST", f"/api/sessions/{session_id}/messages",
                       json={"content": content, **extra}, timeout=120) as resp:
        assert resp.status_code == 200, resp.read()
        assert resp.headers["content-type"].startswith("text/event-stream")
        return sse_events(resp.read().decode())


def prompts_seen(model: ScriptedModel, marker: str) -> list[list[str]]:
    """For each /v1/messages request containing ``marker``: the user texts it carried."""
    seen = []
    for req in model.requests():
        if req.path != "/v1/messages" or marker not in json.dumps(req.body):
            continue
        texts = []
        for msg in req.body.get("messages", []):
            content = msg.get("content")
            blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
            texts += [b.get("text", "") for b in blocks if msg["role"] == "user" and b.get("type") == "text"]
        seen.append(texts)
    return seen


def test_deploy_chat_history_tool_and_end(ashd: AshdProcess, scripted_model: ScriptedModel) -> None:
    marker = uuid.uuid4().hex[:8]
    with httpx.Client(base_url=ashd.url, headers=ashd.headers, timeout=60) as client:
        resp = client.post("/api/agents", json=upload_body("hello", HELLO_AGENT))
        assert resp.status_code == 201, resp.text
        agent = resp.json()["agent"]
        assert agent["name"] == "hello" and agent["version"] == 1

        resp = client.post("/api/sessions", json={"agent": "hello"})
        assert resp.status_code == 201, resp.text
        session = resp.json()["session"]
        assert session["status"] == "active" and session["agentName"] == "hello"
        sid = session["id"]

        # 1. A streamed reply: partial text deltas arrive before done, in order.
        events = send(client, sid, f"[[say: first answer {marker} with several words]]",
                      includePartialMessages=True)
        names = [name for name, _ in events]
        assert names[0] == "session_start" and names[-1] == "done"
        deltas = [data["delta"] for name, data in events if name == "text_delta"]
        assert len(deltas) >= 3, names
        assert "".join(deltas) == f"first answer {marker} with several words"
        assert names.index("text_delta") < names.index("turn_complete") < names.index("done")
        assert "error" not in names

        # 2. The second turn carries the first (what the model received proves it).
        events = send(client, sid, f"[[echo-history]] second {marker}")
        result = next(data for name, data in events if name == "turn_complete")
        assert f"first answer {marker}" in result["result"]
        last = prompts_seen(scripted_model, f"second {marker}")[-1]
        assert any(f"first answer {marker}" in text for text in last)

        # 3. A Bash tool call runs in the workspace; its output comes back as tool_result.
        events = send(client, sid, f"[[bash: echo {marker} > made.txt && cat made.txt && pwd]]")
        tool_use = next(data for name, data in events if name == "tool_use")
        assert tool_use["name"] == "Bash"
        tool_result = next(data for name, data in events if name == "tool_result")
        assert tool_result["tool_use_id"] == tool_use["id"]
        assert marker in tool_result["content"] and not tool_result["is_error"]
        workspace = ashd.data_dir / "sandboxes" / sid / "workspace"
        assert (workspace / "made.txt").read_text().strip() == marker
        # Inside the sandbox the workspace is /workspace; without isolation, its host path.
        assert "/workspace" in tool_result["content"] or str(workspace) in tool_result["content"]

        # History is stored: user prompts and assistant/result messages, in sequence.
        messages = client.get(f"/api/sessions/{sid}/messages").json()["messages"]
        assert [m["sequence"] for m in messages] == list(range(1, len(messages) + 1))
        users = [json.loads(m["content"]) for m in messages if m["role"] == "user"]
        assert users[0]["content"].startswith("[[say: first answer")
        assert len(users) == 3
        timeline = client.get(f"/api/sessions/{sid}/events").json()["events"]
        assert {"text", "tool_start", "tool_result", "turn_complete"} <= {e["type"] for e in timeline}

        # 4. End the session; it is final and its agent process is gone.
        resp = client.delete(f"/api/sessions/{sid}")
        assert resp.status_code == 200 and resp.json()["session"]["status"] == "ended"
        assert client.get(f"/api/sessions/{sid}").json()["session"]["status"] == "ended"
        resp = client.post(f"/api/sessions/{sid}/messages", json={"content": "hi"})
        assert resp.status_code == 400
        assert resp.json() == {"error": "Session is ended", "statusCode": 400}
        assert agent_processes(ashd) == []


def test_ash_published_python_client(ashd: AshdProcess) -> None:
    """Ash's own client (ash-ai-sdk from PyPI) works unchanged."""
    from ash_sdk import AshClient
    from ash_sdk.streaming import DoneEvent, MessageEvent, SessionStartEvent, TextDeltaEvent, TurnCompleteEvent

    client = AshClient(ashd.url, token=ashd.key)
    assert client.health()["status"] == "ok"
    agent = client.deploy_agent("hello-sdk", str(HELLO_AGENT))
    assert agent.name == "hello-sdk"
    assert [a.name for a in client.list_agents()] == ["hello-sdk"]
    session = client.create_session("hello-sdk")
    assert session.status == "active"

    events = list(client.send_message_stream(session.id, "[[say: from the ash sdk]]", include_partial_messages=True))
    assert isinstance(events[0], SessionStartEvent) and isinstance(events[-1], DoneEvent)
    assert "".join(e.delta for e in events if isinstance(e, TextDeltaEvent)) == "from the ash sdk"
    assert any(isinstance(e, TurnCompleteEvent) and e.result == "from the ash sdk" for e in events)
    assert any(isinstance(e, MessageEvent) and e.data.get("type") == "assistant" for e in events)

    assert client.get_session(session.id).status == "active"
    ended = client.end_session(session.id)
    assert ended.status == "ended"


def test_ash_published_python_client_lifecycle(ashd_sqlite: AshdProcess) -> None:
    """Ash's own client drives the whole lifecycle: pause, resume (warm and cold), stop, fork,
    list by status, end, delete the agent."""
    from ash_sdk import AshClient

    client = AshClient(ashd_sqlite.url, token=ashd_sqlite.key)
    client.deploy_agent("life", str(HELLO_AGENT))
    assert client.get_agent("life").name == "life"
    sid = client.create_session("life").id
    assert client.pause_session(sid).status == "paused"
    assert [s.id for s in client.list_sessions(agent="life", status="paused")] == [sid]
    assert client.resume_session(sid).status == "active"  # warm
    assert client.stop_session(sid).status == "stopped"
    assert client.resume_session(sid).status == "active"  # cold
    list(client.send_message_stream(sid, "[[say: still here]]"))
    child = client.fork_session(sid)
    assert child.status == "paused" and str(child.id) != str(sid)
    assert client.end_session(child.id).status == "ended"
    assert client.end_session(sid).status == "ended"
    client.delete_agent("life")
    assert [a.name for a in client.list_agents()] == []
