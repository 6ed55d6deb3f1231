"""Whether a session's options fit its agent (reads the deployed agent folder; raises BadRequest).

Kept out of the pure options module: it reads the agent's sandbox policy file and its
``.claude/agents``, and judges MCP hosts against the egress allowlist the sandbox enforces.
Blocks (file reads): call it through ``Offload``.
"""

from __future__ import annotations

from pathlib import Path

from ashd import option_fields as fields
from ashd.errors import BadRequest
from ashd.options import SessionOptions
from ashd.proxy.egress import host_allowed
from ashd.sandbox.limits import AGENT_POLICY_FILE, agent_policy


def check_for_agent(options: SessionOptions, agent_path: str) -> None:
    """400 unless the options fit the agent: every url MCP server's host is on its egress
    allowlist (``.ashd/sandbox.json``; the sandbox can reach nothing else), and
    ``initialAgent`` names one of ``subagents`` or of its ``.claude/agents``. Blocks (reads files)."""
    if options.initial_agent and options.initial_agent not in options.subagents:
        if not (Path(agent_path) / ".claude" / "agents" / f"{options.initial_agent}.md").is_file():
            raise BadRequest(f"initialAgent {options.initial_agent!r} is neither in subagents nor in the agent's "
                             ".claude/agents; define it in subagents")
    hosts = fields.remote_hosts(options.mcp_servers)
    if not hosts:
        return
    allow = agent_policy(Path(agent_path)).egress_allow
    for name, host in sorted(hosts.items()):
        if not host_allowed(host, allow):
            raise BadRequest(f"mcpServers.{name}: host {host} is not on the agent's egress allowlist "
                             f"({', '.join(allow) or 'empty'}); add it to {AGENT_POLICY_FILE} egress.allow "
                             "and redeploy, or use a stdio server")
