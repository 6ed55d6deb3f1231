"""Fixtures for the scripted model tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from claude_agent_sdk import ClaudeAgentOptions

from ashd.scripted import ScriptedModel

from .harness import Agent


@pytest.fixture
def model() -> Iterator[ScriptedModel]:
    """A running scripted model on an ephemeral loopback port (input 11, output 7 tokens)."""
    with ScriptedModel(input_tokens=11, output_tokens=7) as running:
        yield running


@pytest.fixture
def agent(model: ScriptedModel, tmp_path: Path) -> Agent:
    """A real-CLI configuration: isolated HOME, bypassPermissions, partial messages on."""
    workspace, home = tmp_path / "workspace", tmp_path / "home"
    workspace.mkdir()
    home.mkdir()
    stderr: list[str] = []
    options = ClaudeAgentOptions(
        cwd=str(workspace),
        env={
            "ANTHROPIC_BASE_URL": model.base_url,
            "ANTHROPIC_API_KEY": "test-key",
            "HOME": str(home),
            "CLAUDE_CONFIG_DIR": str(home / ".claude"),
            "IS_SANDBOX": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        },
        permission_mode="bypassPermissions",
        system_prompt="You are the scripted-model test agent.",
        include_partial_messages=True,
        stderr=stderr.append,
    )
    return Agent(options, workspace, home, stderr)
