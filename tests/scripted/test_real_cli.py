"""The real Claude Code CLI (via claude_agent_sdk) driven offline by the scripted model."""

from __future__ import annotations

import asyncio
import hashlib
import time

from claude_agent_sdk import (
    ClaudeSDKClient,
    StreamEvent,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
    UserMessage,
)

from ashd.scripted import ScriptedModel

from .harness import Agent, Turn, run_turns, take_turn


def messages_requests(model: ScriptedModel) -> list[dict]:
    """Bodies of the POST /v1/messages requests the model received, oldest first."""
    return [r.body for r in model.requests() if r.method == "POST" and r.path == "/v1/messages"]


def test_say_streams_text_in_several_deltas(model: ScriptedModel, agent: Agent) -> None:
    (turn,) = run_turns(agent, "[[say: hello from the scripted model]]")
    assert turn.text == "hello from the scripted model", agent.stderr
    assert turn.result.result == "hello from the scripted model"
    assert not turn.result.is_error
    texts = [d["text"] for d in turn.deltas("text_delta")]
    assert len(texts) >= 4 and "".join(texts) == turn.text
    assert turn.result.usage is not None
    assert (turn.result.usage["input_tokens"], turn.result.usage["output_tokens"]) == (11, 7)

    (request,) = [r for r in model.requests() if r.path == "/v1/messages"]
    assert (request.method, request.query, request.status) == ("POST", "beta=true", 200)
    assert request.x_api_key_sha256 == hashlib.sha256(b"test-key").hexdigest()
    assert request.body["stream"] is True
    assert "You are the scripted-model test agent." in str(request.body["system"])


def test_bash_round_trip_runs_in_the_workspace(model: ScriptedModel, agent: Agent) -> None:
    (turn,) = run_turns(agent, "[[bash: echo hi > f.txt && cat f.txt]]")
    (tool_use,) = turn.blocks(ToolUseBlock)
    assert tool_use.name == "Bash"
    assert tool_use.input["command"] == "echo hi > f.txt && cat f.txt"
    results = [
        b
        for m in turn.messages
        if isinstance(m, UserMessage) and isinstance(m.content, list)
        for b in m.content
        if isinstance(b, ToolResultBlock)
    ]
    assert [(r.tool_use_id, r.is_error) for r in results] == [(tool_use.id, False)]
    assert (agent.workspace / "f.txt").read_text() == "hi\n"
    assert turn.result.result == "tool said: hi"
    assert turn.result.num_turns == 2

    _, second = messages_requests(model)
    returned = second["messages"][-1]["content"][0]
    assert (returned["type"], returned["tool_use_id"]) == ("tool_result", tool_use.id)


def test_thinking_block_and_usage_override(agent: Agent) -> None:
    (turn,) = run_turns(
        agent, "[[think: weigh the options]] [[say: decided]] [[usage: in=1000 out=500]]"
    )
    (thinking,) = turn.blocks(ThinkingBlock)
    assert thinking.thinking == "weigh the options"
    assert thinking.signature
    assert turn.blocks(TextBlock)[0].text == "decided"
    assert turn.deltas("signature_delta")
    assert turn.result.usage is not None
    assert (turn.result.usage["input_tokens"], turn.result.usage["output_tokens"]) == (1000, 500)


def test_second_query_sees_the_first(model: ScriptedModel, agent: Agent) -> None:
    first, second = run_turns(agent, "remember alpha-123", "[[echo-history]]")
    assert first.result.result == "ok: remember alpha-123"
    assert second.result.result == "history: remember alpha-123 | [[echo-history]]"
    assert len(messages_requests(model)) == 2


def test_fail_fast_errors_then_recovery(model: ScriptedModel, agent: Agent) -> None:
    denied, overloaded, recovered = run_turns(
        agent,
        "[[error: 403 scripted denial]]",
        "[[error: 529 retry=false scripted overload]]",
        "[[say: recovered]]",
    )
    for turn, status in ((denied, 403), (overloaded, 529)):
        assert turn.result.is_error
        assert turn.result.api_error_status == status
        assert turn.seconds < 10
    assert "scripted denial" in (denied.result.result or "")
    assert recovered.result.result == "recovered" and not recovered.result.is_error
    statuses = [r.status for r in model.requests() if r.path == "/v1/messages"]
    assert statuses == [403, 529, 200]


def test_stream_errors_resume_and_fall_back(model: ScriptedModel, agent: Agent) -> None:
    resumed, fallback = run_turns(
        agent,
        "[[say: partial]] [[error: 529 mid-stream]] [[say: resumed]]",
        "[[error: 400 stream-only broken]] [[say: via non-streaming]]",
    )
    assert [b.text for b in resumed.blocks(TextBlock)] == ["partial", "resumed"]
    assert fallback.result.result == "via non-streaming"
    streams = [body["stream"] for body in messages_requests(model)]
    assert streams == [True, True, True, False]


def test_interrupt_disconnects_the_stream(model: ScriptedModel, agent: Agent) -> None:
    async def session() -> tuple[Turn, Turn]:
        async with ClaudeSDKClient(agent.options) as client:
            await client.query("[[say: early]] [[sleep: 20000]] [[say: late]]")
            seen: list[object] = []
            async for message in client.receive_response():
                is_delta = isinstance(message, StreamEvent) and "delta" in message.event
                if is_delta and not any(
                    isinstance(m, StreamEvent) and "delta" in m.event for m in seen
                ):
                    await client.interrupt()  # on the first partial text
                seen.append(message)
            after = await take_turn(client, "[[echo-history]]")
        return Turn(seen, 0.0), after

    started = time.monotonic()
    interrupted, after = asyncio.run(asyncio.wait_for(session(), 30))
    assert time.monotonic() - started < 10
    assert interrupted.text == "early"
    assert interrupted.result.is_error
    assert interrupted.result.terminal_reason == "aborted_streaming"
    assert after.result.result == (
        "history: [[say: early]] [[sleep: 20000]] [[say: late]] | [[echo-history]]"
    )
    assert model.requests()[0].disconnected


def test_title_side_request_and_probe(model: ScriptedModel, agent: Agent) -> None:
    assert isinstance(agent.options.env, dict)
    del agent.options.env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"]
    (turn,) = run_turns(agent, "[[say: titled]]")
    assert turn.result.result == "titled"
    assert ("HEAD", "/api/hello", 200) in [(r.method, r.path, r.status) for r in model.requests()]
    titles = [
        r
        for r in model.requests()
        if r.body and "output_config" in r.body and "format" in r.body["output_config"]
    ]
    assert len(titles) == 1 and titles[0].status == 200
    transcripts = list((agent.home / ".claude" / "projects").rglob("*.jsonl"))
    assert any('"Scripted session"' in path.read_text() for path in transcripts)
