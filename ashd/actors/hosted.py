"""What the runner keeps of a sandbox it hosts (:class:`Hosted`), what it is configured with
(:class:`HostConfig`), and the small pieces :class:`~ashd.actors.sandbox_host.SandboxHost`
reads a launch with: the order's :func:`fingerprint` (what an adopting launch must match), its
:func:`lease_of`, a refusal's answer, and the log ring that sends stderr up the link."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pykka

from ashd.actors.sandbox import SandboxActor
from ashd.config import ModelConfig
from ashd.errors import SandboxFailed, Unavailable
from ashd.layout import Layout
from ashd.runnerlink.mux import Json, Mux
from ashd.sandbox.launch_order import LaunchOrder
from ashd.sandbox.launcher import Launcher, SandboxSpec
from ashd.sandbox.linked_admission import LinkedAdmission
from ashd.sandbox.logring import LogBook, LogLine, LogRing
from ashd.snapshot.fingerprint import workspace_digest
from ashd.snapshot.snapshots import Snapshotter


@dataclass(frozen=True)
class HostConfig:
    layout: Layout
    launcher: Launcher
    model: ModelConfig
    ready_timeout_s: float = 60.0
    stop_grace_s: float = 5.0
    cli_workspace: str | None = None  # the launcher's view of the workspace (its transcript key)
    snapshots: Snapshotter | None = None  # the runner's own snapshot settings (the shared blob store)
    admission: LinkedAdmission | None = None  # None: every launch admitted (components without limits)
    digest: Callable[[Path], str | None] = workspace_digest  # tells an unchanged workspace (no upload)


def refused(exc: Unavailable) -> Json:
    return {"refused": {"status": exc.status, "message": str(exc), "retry_after_s": exc.retry_after_s}}


@dataclass
class Hosted:
    spec: SandboxSpec
    ref: pykka.ActorRef[SandboxActor]
    link: Mux | None  # the owning coordinator's link; None: released, waiting to be adopted
    pid: int = 0
    generation: int | None = None  # the owner's session lease generation (None: no leases)
    fingerprint: str = ""  # what an adopting launch must match (ashd/sandbox/launch_order.py)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    saved: str | None = None  # the digest of the workspace this sandbox last saved (None: save)
    grace: asyncio.TimerHandle | None = None
    stopping: asyncio.Future[Json] | None = None


def fingerprint(order: LaunchOrder) -> str:
    """The parts of an order that make the sandbox what it is: an adopting launch must carry
    the same (a configuration changed meanwhile starts a new sandbox)."""
    settings = {k: v for k, v in order.settings.items() if k != "fork_from"}
    return json.dumps([order.tenant_id, order.session_id, order.agent_key, settings, order.user_env, order.policy,
                       order.upstream_key], sort_keys=True, default=str)


def lease_of(body: Json) -> int | None:
    lease = body.get("lease")
    if lease is None:
        return None
    if isinstance(lease, bool) or not isinstance(lease, int):
        raise SandboxFailed("malformed launch: lease must be an integer")
    return lease


class ForwardingRing(LogRing):
    """A log ring that also sends each stderr line up the link."""

    def __init__(self, forward: Callable[[str], None]) -> None:
        super().__init__()
        self._forward = forward

    def add(self, level: str, text: str) -> LogLine:
        line = super().add(level, text)
        if level == "stderr":
            self._forward(line.text)
        return line


class OneRing(LogBook):
    def __init__(self, ring: LogRing) -> None:
        super().__init__(keep=1)
        self._one = ring

    def ring(self, session_id: str) -> LogRing:
        return self._one
