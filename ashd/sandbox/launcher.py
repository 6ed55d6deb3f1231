"""Starting a bridge process for a sandbox.

:class:`SandboxSpec` says everything about one sandbox; a :class:`Launcher` turns it into a
running process. The process always starts in its own session (process group) so the
whole tree can be signalled at once. :class:`DirectLauncher` runs the bridge without OS
isolation; an isolating launcher wraps the same argv (see docs/architecture.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from ashd.config import Secret
from ashd.errors import SandboxFailed
from ashd.sandbox.limits import SandboxPolicy
from ashd.sandbox.pyrun import module_argv
from ashd.sandbox.zygote import BridgeProcess, BridgeZygote, popen_bridge
from ashd.store import StoreError
from ashd.wire.settings import BridgeSettings


@dataclass(frozen=True)
class SandboxSpec:
    sandbox_id: str
    session_id: str
    agent_name: str
    tenant_id: str
    root: Path  # the sandbox dir: workspace/, home/, bridge.json, sandbox.log
    socket_path: Path
    env: Mapping[str, str] = field(hash=False)
    settings: BridgeSettings = field(hash=False)
    # The deployed agent folder (policy files are read from here, never from the workspace).
    agent_dir: Path | None = None
    # The agent version ("<agent id>.<version>"): how a runner names its cached copy of the folder.
    agent_key: str = ""
    # The runner that hosts this sandbox (coordinator mode; ashd/sandbox/remote.py). None: this host.
    runner_id: str | None = None
    policy: SandboxPolicy = field(default_factory=SandboxPolicy, hash=False)
    # The session's own upstream model key (a stored credential): for the model proxy only,
    # never the sandbox's environment. None: the daemon's key.
    upstream_key: Secret | None = field(default=None, hash=False, compare=False)
    # What the session already spent before this start, counted against its maxBudgetUsd by
    # the model proxy: a runner's sandbox gets it in its launch order (ashd/sandbox/launch_order.py);
    # a standalone start leaves it 0 and its launcher reads the recorded spend itself.
    spent_usd: float = field(default=0.0, hash=False, compare=False)
    # Run by the launcher once HOME is in place, before the bridge starts: (config dir, HOME
    # bounding every write) -> the session to fork from, or None. Restores the CLI's transcript
    # if it has none (ashd/sandbox/resume.py).
    restore_transcript: Callable[[Path, Path], str | None] | None = field(default=None, hash=False, compare=False)

    @property
    def workspace(self) -> Path:
        return self.root / "workspace"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def log_path(self) -> Path:
        return self.root / "sandbox.log"


@runtime_checkable
class Detached(Protocol):
    """A bridge process that is not this host's child: its launcher stops it (there is no
    local process group to signal)."""

    def stop_group(self, grace_s: float) -> int:
        """TERM, wait ``grace_s``, KILL; the exit code. Blocking."""
        ...


class Launcher(Protocol):
    """Turns a spec into a running bridge, and cleans up after it.

    Called from the sandbox's actor thread (``spawn``) and its exit-watcher thread
    (``exit_reason``, then ``cleanup``); implementations must be thread-safe per spec.
    """

    name: str

    def spawn(self, spec: SandboxSpec) -> BridgeProcess:
        """Start the bridge; its stdout is a pipe that carries the ready byte, its stderr
        a pipe (or None) that the caller drains into the sandbox log.

        Raises OSError, or SandboxFailed when the sandbox cannot be set up.
        """
        ...

    def exit_reason(self, spec: SandboxSpec, returncode: int) -> str | None:
        """Why the sandbox ended, if the launcher knows better than the exit code (e.g. OOM)."""
        ...

    def cleanup(self, spec: SandboxSpec) -> None:
        """Release what spawn set up (after the process exited). Idempotent; never raises."""
        ...


class DirectLauncher:
    """Runs the bridge as a plain child process (no namespaces, no uid change): forked by the
    zygote when there is one (ashd/sandbox/zygote.py), else ``python -m ashd.bridge``."""

    name = "direct"

    def __init__(self, zygote: BridgeZygote | None = None) -> None:
        self._zygote = zygote

    @staticmethod
    def argv_for(settings_file: Path) -> list[str]:
        return module_argv("ashd.bridge", str(settings_file))

    def spawn(self, spec: SandboxSpec) -> BridgeProcess:
        if spec.upstream_key is not None:
            # Without the model proxy the key could only travel in the environment: refuse.
            raise SandboxFailed("this session uses a stored credential, which needs the model proxy "
                                "(sandbox.isolation = bwrap); the direct launcher cannot serve it")
        (spec.home / ".claude").mkdir(parents=True, exist_ok=True)
        spec = with_transcript(spec, spec.home)
        spec.settings.write(spec.root / "bridge.json")
        argv = [str(spec.root / "bridge.json")]
        if self._zygote is not None:
            return self._zygote.spawn(argv, spec.env, spec.workspace)
        return popen_bridge(argv, spec.env, spec.workspace)

    def exit_reason(self, spec: SandboxSpec, returncode: int) -> str | None:
        return None

    def cleanup(self, spec: SandboxSpec) -> None:
        return None


def with_transcript(spec: SandboxSpec, home: Path) -> SandboxSpec:
    """Restore the CLI's transcript into ``home``/.claude if it has none; the spec to start the
    bridge with (forking its parent's conversation if that is what was restored). Blocking.
    Raises SandboxFailed when the database cannot be read, OSError when the dir cannot be written."""
    if spec.restore_transcript is None:
        return spec
    try:
        fork_from = spec.restore_transcript(home / ".claude", home)
    except StoreError as exc:
        raise SandboxFailed(f"cannot restore the session's conversation from the database: {exc}") from exc
    settings = dataclasses.replace(spec.settings, fork_from=fork_from) if fork_from else spec.settings
    return dataclasses.replace(spec, settings=settings, restore_transcript=None)
