"""Files of the deployed agent that a sandbox binds read-only over its workspace.

:func:`write_copies` makes the copies (the agent's own file, or a default when it has none)
into the sandbox's policy dir (``SandboxKit._policy``), and bwrap binds each copy at
``/workspace/<name>`` (``bwrap.bwrap_argv`` walks :data:`AGENT_BINDS`), covering whatever
the workspace holds there (often an empty placeholder bwrap created as the mount point).
The files API shows these copies, so listings, reads and bundles match what the agent sees
(``ashd/files/bound.py``; for stopped sessions, fresh copies from ``write_copies``).

To bind another file: add a row here, a field to ``bwrap.Mounts`` that ``SandboxKit.mounts``
fills with the copy's path, and the copy to :func:`write_copies`. The deployed folder is read
without following symlinks (``ashd/files/agent_folder.py``).
``tests/files/test_bound.py`` checks the table against bwrap's binds.
"""

from __future__ import annotations

import json
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from ashd.errors import AshError
from ashd.files.agent_folder import INSTRUCTIONS, agent_tree, copy_out, instructions, read_small

PLAN_NAME = "sandbox-plan.json"  # in the sandbox's dir, written by the kit
MAX_BOUND_FILE_BYTES = 1 << 20  # a larger .mcp.json is refused (BadRequest)


@dataclass(frozen=True)
class AgentBind:
    name: str  # top-level name in the workspace, e.g. ".mcp.json"
    mount: str  # the field of bwrap.Mounts (and of the sandbox plan's "mounts") with the host copy
    is_dir: bool


AGENT_BINDS: tuple[AgentBind, ...] = (
    AgentBind(".claude", "claude_dir", is_dir=True),
    AgentBind(".mcp.json", "mcp_json", is_dir=False),
    # The instructions: what an agent writes to /workspace/CLAUDE.md never reaches the CLI.
    AgentBind(INSTRUCTIONS, "claude_md", is_dir=False),
)


def bound_sources(plan_path: Path) -> dict[str, Path]:
    """Workspace name -> host copy, for each bind of the sandbox plan at ``plan_path`` whose
    copy exists with the expected type (not a symlink). Empty without a plan (a sandbox
    started without bwrap binds nothing). Blocking (a small file read)."""
    try:
        mounts = json.loads(plan_path.read_text()).get("mounts")
    except (OSError, ValueError, AttributeError):
        return {}
    if not isinstance(mounts, dict):
        return {}
    out: dict[str, Path] = {}
    for bind in AGENT_BINDS:
        source = mounts.get(bind.mount)
        if not isinstance(source, str) or not source.startswith("/"):
            continue
        try:
            mode = Path(source).lstat().st_mode
        except OSError:
            continue
        if (stat.S_ISDIR(mode) if bind.is_dir else stat.S_ISREG(mode)):
            out[bind.name] = Path(source)
    return out


def write_copies(agent_dir: Path | None, dest: Path) -> dict[str, Path]:
    """Write the copies a sandbox of ``agent_dir`` gets bound under ``dest`` (made here) and
    return name -> copy, as :func:`bound_sources` does: the deployed folder's own
    ``.claude/``, ``.mcp.json`` and ``CLAUDE.md`` (read without following any symlink), else
    defaults (an empty ``.claude/``, no MCP servers, empty instructions). Blocking (copies);
    raises BadRequest for an oversized ``.mcp.json``."""
    dest.mkdir(parents=True, exist_ok=True)
    claude, mcp, claude_md = dest / "claude", dest / "mcp.json", dest / INSTRUCTIONS
    if agent_dir is not None:
        try:
            copy_out(agent_tree(agent_dir / ".claude"), claude, lambda _name: False)
        except AshError:
            shutil.rmtree(claude, ignore_errors=True)  # no .claude/ (or a symlink): an empty one
    claude.mkdir(exist_ok=True)
    (claude / "skills").mkdir(exist_ok=True)  # exists, so bwrap protects it (read-only)
    settings = claude / "settings.json"
    if not settings.exists() and not settings.is_symlink():
        settings.write_text("{}\n")
    deployed = agent_tree(agent_dir) if agent_dir is not None else None
    data = read_small(deployed, (".mcp.json",), MAX_BOUND_FILE_BYTES) if deployed else None
    mcp.write_bytes(data if data is not None else b'{"mcpServers": {}}\n')
    claude_md.write_text((instructions(agent_dir) if agent_dir is not None else None) or "")
    return {".claude": claude, ".mcp.json": mcp, INSTRUCTIONS: claude_md}
