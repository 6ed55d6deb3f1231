"""The sandbox spec of a session: its files in place, then everything a launcher needs.

A session with no workspace on this machine yet gets its latest snapshot, else a fresh copy
of its agent; the conversation is restored by the launcher whenever the CLI has no
transcript (``ashd/sandbox/resume.py``). Blocking (copies, archive extraction, store reads):
called on a session's start thread, never on an actor's mailbox thread or the IOLoop.
Holds no mutable state, so one builder serves every session.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from ashd.config import ModelConfig, SandboxConfig, Secret
from ashd.errors import AshError, SandboxFailed, SnapshotError
from ashd.files import agent_folder
from ashd.layout import Layout
from ashd.options import SessionOptions
from ashd.sandbox import limits, resume, workspace
from ashd.sandbox.env import sandbox_env
from ashd.sandbox.launcher import SandboxSpec
from ashd.snapshot.snapshots import Snapshotter
from ashd.store import AgentRow, SessionRow, Store
from ashd.store.vault import CredentialVault
from ashd.wire.settings import BridgeSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Built:
    """A spec ready to launch, and where its workspace came from: local|cloud|fresh."""

    spec: SandboxSpec
    source: str


@dataclass(frozen=True)
class SpecBuilder:
    store: Store
    layout: Layout
    model: ModelConfig
    sandbox: SandboxConfig
    snapshots: Snapshotter
    cli_workspace: str | None = None  # the workspace path as the CLI sees it, if the launcher remaps it
    credential_key: Secret = field(default_factory=lambda: Secret(""))  # ASH_CREDENTIAL_KEY (ashd/store/vault.py)

    def build(self, row: SessionRow, agent: AgentRow) -> Built:
        """Files first, then the spec. Raises SandboxFailed when the agent folder cannot be
        copied, what the vault raises for a bad credential."""
        source = self.prepare_files(row)
        return Built(self.spec(row, agent), source)

    def root(self, row: SessionRow) -> Path:
        return self.layout.sandbox_dir(row.sandbox_id or row.id)

    def disk_mb(self, row: SessionRow, agent: AgentRow) -> int:
        """The session's workspace quota in MiB (0: the pool's default), without building
        anything: what a start promises before it queues (``PoolActor.promise_disk``)."""
        return limits.policy_for(self.sandbox, Path(agent.path), row.config).limits.disk_mb or 0

    def cli_cwd(self, root: Path) -> str:
        """The CLI's working directory as it will see it (decides its transcript's project key)."""
        return self.cli_workspace or str(root / "workspace")

    def prepare_files(self, row: SessionRow) -> str:
        """The workspace of a session new to this machine: its latest snapshot if it has one
        (the rest is copied from the agent in :meth:`spec`). Returns local|cloud|fresh."""
        root = self.root(row)
        ws = root / "workspace"
        if ws.exists():
            return "local"
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            restored = self.snapshots.restore(row.id, row.tenant_id, ws)
        except SnapshotError as exc:
            log.error("session %s: snapshot not restored (%s); starting from the agent folder", row.id, exc)
            restored = False
        if restored:
            log.info("session %s: workspace restored from its snapshot", row.id)
        return "cloud" if restored else "fresh"

    def spec(self, row: SessionRow, agent: AgentRow) -> SandboxSpec:
        options = SessionOptions.from_json(row.config)
        sandbox_id = row.sandbox_id or row.id
        root = self.root(row)
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            workspace.prepare(Path(agent.path), root / "workspace")
        except (OSError, AshError) as exc:
            raise SandboxFailed(f"cannot copy agent folder {agent.path}: {exc}") from exc
        socket_path = self.layout.socket_path(sandbox_id)
        settings = BridgeSettings(
            session_id=row.id,
            socket_path=str(socket_path),
            workspace=str(root / "workspace"),
            # The deployed instructions, never the workspace's CLAUDE.md (the agent can edit that).
            system_prompt=options.system_prompt or agent_folder.instructions(agent.path),
            model=options.model,
            permission_mode=options.permission_mode or self.sandbox.permission_mode,
            allowed_tools=options.allowed_tools,
            disallowed_tools=options.disallowed_tools,
            mcp_servers=options.mcp_servers,
            betas=options.betas,
            subagents=options.subagents,
            initial_agent=options.initial_agent,
        )
        env = sandbox_env(
            home=str(root / "home"),
            model_base_url=self.model.base_url,
            model_key=self.model.api_key.reveal(),
            model_auth_token=self.model.auth_token.reveal(),
            user_env={**agent.env, **options.extra_env},
        )
        policy = limits.policy_for(self.sandbox, Path(agent.path), row.config)
        # The session's own upstream key goes to the model proxy only, never into ``env``.
        upstream = (CredentialVault(self.store, self.credential_key)
                    .open_for_session(row.tenant_id, options.credential_id) if options.credential_id else None)
        restore = resume.TranscriptRestore(self.store, row.tenant_id, row.id, row.parent_session_id,
                                           self.cli_cwd(root))
        return SandboxSpec(sandbox_id, row.id, agent.name, row.tenant_id, root, socket_path, env, settings,
                           agent_dir=Path(agent.path), agent_key=f"{agent.id}.{agent.version}",
                           runner_id=row.runner_id, policy=policy, upstream_key=upstream,
                           restore_transcript=restore)
