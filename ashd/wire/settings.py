"""What a bridge process is told at start: a small JSON file written by ashd (mode 0600).

Secrets never travel in this file or on the bridge's argv (both are readable by anyone who
can read /proc or the sandbox dir); the bridge's environment carries what the CLI needs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class BridgeSettings:
    session_id: str
    socket_path: str
    workspace: str
    system_prompt: str | None = None
    model: str | None = None
    permission_mode: str = "bypassPermissions"
    allowed_tools: list[str] = field(default_factory=list)
    disallowed_tools: list[str] = field(default_factory=list)
    # The session's MCP servers, betas, subagents ({name: AgentDefinition fields}) and the
    # agent the main thread starts as (see ashd/options.py SessionOptions).
    mcp_servers: dict[str, dict[str, Any]] = field(default_factory=dict)
    betas: list[str] = field(default_factory=list)
    subagents: dict[str, dict[str, Any]] = field(default_factory=dict)
    initial_agent: str | None = None
    cli_path: str | None = None
    # How the CLI itself sees its config dir and cwd, when a sandbox remaps them (e.g.
    # /home/agent/.claude and /workspace). None: the same as the bridge's.
    cli_config_dir: str | None = None
    cli_cwd: str | None = None
    # A fork's first start: continue this parent conversation under our own session id.
    fork_from: str | None = None

    @property
    def cwd_for_cli(self) -> str:
        return self.cli_cwd or self.workspace

    def write(self, path: Path) -> None:
        """Write atomically with mode 0600."""
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        tmp.chmod(0o600)
        tmp.replace(path)

    @classmethod
    def read(cls, path: Path) -> BridgeSettings:
        raw: dict[str, Any] = json.loads(path.read_text())
        return cls(**raw)
