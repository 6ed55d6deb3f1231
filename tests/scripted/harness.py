"""A small harness around the real Claude Code CLI, driven through claude_agent_sdk.

Every call blocks the calling (test) thread; each ``run_turns`` spawns one CLI process.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from claude_agent_sdk import (
    AssistantMessage,
    ClaudeAgentOptions,
    ClaudeSDKClient,
    ResultMessage,
    StreamEvent,
    TextBlock,
)

TURN_TIMEOUT_S = 30.0


@dataclass
class Agent:
    """Options for one real CLI run against ``model``, plus the CLI's stderr lines."""

    options: ClaudeAgentOptions
    workspace: Path
    home: Path
    stderr: list[str] = field(default_factory=list)


@dataclass
class Turn:
    """Everything the SDK yielded for one ``query()``, up to its ResultMessage."""

    messages: list[Any]
    seconds: float

    @property
    def result(self) -> ResultMessage:
        last = self.messages[-1]
        assert isinstance(last, ResultMessage), f"turn did not end with a result: {last!r}"
        return last

    def blocks(self, kind: type) -> list[Any]:
        """Content blocks of type ``kind`` from the AssistantMessages, in order."""
        return [
            block
            for message in self.messages
            if isinstance(message, AssistantMessage)
            for block in message.content
            if isinstance(block, kind)
        ]

    @property
    def text(self) -> str:
        return "".join(block.text for block in self.blocks(TextBlock))

    def deltas(self, kind: str) -> list[dict[str, Any]]:
        """The ``delta`` of every partial content_block_delta StreamEvent of ``kind``."""
        return [
            m.event["delta"]
            for m in self.messages
            if isinstance(m, StreamEvent)
            and m.event.get("type") == "content_block_delta"
            and m.event["delta"].get("type") == kind
        ]


async def take_turn(client: ClaudeSDKClient, prompt: str) -> Turn:
    """Send ``prompt`` and collect the turn (bounded by ``TURN_TIMEOUT_S``)."""
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def collect() -> list[Any]:
        await client.query(prompt)
        return [message async for message in client.receive_response()]

    messages = await asyncio.wait_for(collect(), TURN_TIMEOUT_S)
    return Turn(messages, loop.time() - started)


def run_turns(agent: Agent, *prompts: str) -> list[Turn]:
    """Run ``prompts`` as consecutive turns of one real CLI session; blocks the caller."""

    async def session() -> list[Turn]:
        async with ClaudeSDKClient(agent.options) as client:
            turns = [await take_turn(client, prompt) for prompt in prompts]
        return turns

    return asyncio.run(session())
