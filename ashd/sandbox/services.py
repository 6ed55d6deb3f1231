"""Build the sandbox side of ashd at start-up and take it down at shutdown.

:func:`start` probes the host, assesses it against ``sandbox.floor`` and returns the launcher
to use: the :class:`IsolatingLauncher` with its proxies, the :class:`DirectLauncher` when the
operator opted out (``sandbox.isolation = "none"``, logged loudly) and lowered the floor, or a
:class:`RefusingLauncher` whose every spawn fails with the report's remedy. Blocking; called
once from the daemon's start-up, before the actor tree.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ashd.body_policy import BodyPolicy
from ashd.config import Config, egress_pins
from ashd.errors import SandboxFailed
from ashd.limit_fields import Limits
from ashd.metrics import Metrics
from ashd.proxy.egress import EgressProxy
from ashd.proxy.gate import Gate
from ashd.proxy.loop import ProxyLoop
from ashd.proxy.meter import Usage
from ashd.proxy.model import ModelProxy
from ashd.sandbox import cgroups, isolation, reaper
from ashd.sandbox.isolating_launcher import IsolatingLauncher, Ports
from ashd.sandbox.kit import KitConfig
from ashd.sandbox.launcher import DirectLauncher, Launcher, SandboxSpec
from ashd.sandbox.oom import OomWatcher
from ashd.sandbox.recorder import Notify, Recorder, WriteSoon
from ashd.sandbox.uids import UidPool
from ashd.sandbox.zygote import BridgeProcess, BridgeZygote
from ashd.store import Store

log = logging.getLogger(__name__)


class RefusingLauncher:
    """Below the floor: every session start fails with what to install or configure."""

    name = "refusing"

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def spawn(self, spec: SandboxSpec) -> BridgeProcess:
        raise SandboxFailed(self.reason)

    def exit_reason(self, spec: SandboxSpec, returncode: int) -> str | None:
        return None

    def cleanup(self, spec: SandboxSpec) -> None:
        return None


@dataclass
class Services:
    launcher: Launcher
    report: isolation.Report
    _closers: list[Any] = field(default_factory=list)
    # Whether the proxies' loop answers within the timeout; None: no proxies to ask.
    _ping: Callable[[float], bool] | None = None
    zygote: BridgeZygote | None = None

    def isolation(self) -> dict[str, Any]:
        """For /health: the isolation report and the bridge zygote's state (None: not used)."""
        return {**self.report.to_json(), "zygote": self.zygote.status() if self.zygote else None}

    def answers(self, timeout_s: float) -> bool:
        """True if the proxies (when there are any) answer within ``timeout_s``. Blocking."""
        return self._ping is None or self._ping(timeout_s)

    def stop(self) -> None:
        """After every sandbox stopped: close proxies, watcher and writer. Idempotent; never raises."""
        closers, self._closers = self._closers, []
        for close in reversed(closers):
            try:
                close()
            except Exception:
                log.exception("sandbox services: shutdown step failed")


def cli_binary() -> str:
    """The CLI bundled with the SDK (world-readable, so every sandbox uid can bind it)."""
    import claude_agent_sdk
    return str(Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude")


Divert = Callable[[str, str, dict[str, Any]], bool]
"""(session id, "usage" or "notice", body): True when the session's sandbox is a linked one and
the fact went up its link to the coordinator instead (runner mode; ashd/actors/sandbox_host.py)."""


def start(config: Config, store: Store, notify: Notify | None = None, metrics: Metrics | None = None,
          divert: Divert | None = None, write_soon: WriteSoon | None = None) -> Services:
    sb = config.sandbox
    report = isolation.assess(isolation.probe(sb.uid_base), sb.isolation, sb.floor)
    if not report.meets_floor:
        log.error("refusing to start sessions: %s", report.refusal())
        return Services(RefusingLauncher(report.refusal()), report)
    if sb.isolation == "none":
        log.warning("SANDBOX ISOLATION IS OFF (sandbox.isolation = none): agents run as ashd's user with "
                    "ashd's files, network and model credential. Never use this with untrusted agents.")
        zygote = _zygote(config, metrics or Metrics())
        return Services(DirectLauncher(zygote), report, [zygote.close] if zygote else [], zygote=zygote)
    metrics = metrics or Metrics()
    return _isolating(config, store, report, Recorder(store, notify, metrics, write_soon), divert, metrics)


def _zygote(config: Config, metrics: Metrics) -> BridgeZygote | None:
    """The supervised bridge zygote, unless ``sandbox.zygote`` is off; its state in ``metrics``."""
    if not config.sandbox.zygote:
        return None
    zygote = BridgeZygote(on_restart=metrics.zygote_restarts.inc).start()
    metrics.zygote_up.set_function(lambda: 1.0 if zygote.running else 0.0)
    return zygote


def _isolating(config: Config, store: Store, report: isolation.Report, recorder: Recorder,
               divert: Divert | None, metrics: Metrics) -> Services:
    """``divert``: a runner's linked sandboxes send their usage and notices up their link."""
    sb = config.sandbox

    def on_event(tenant: str, session: str, payload: dict[str, Any]) -> None:
        if divert is None or not divert(session, "notice", payload):
            recorder.notice(tenant, session, payload)

    def on_usage(gate: Gate, usage: Usage) -> None:
        if divert is None or not divert(gate.session_id, "usage", dataclasses.asdict(usage)):
            recorder.usage(gate.tenant_id, gate.session_id, gate.agent_name, usage)

    digest = instance_of(config.data_dir)
    layout = cgroups.detect(instance=digest)
    mount_root = sb.mount_root / digest
    _sweep(layout, config.data_dir / "sandboxes", mount_root)
    if layout.mode != "none":
        cgroups.prepare(layout)
    loop = ProxyLoop()
    cap, idle = config.proxy.max_connections_per_sandbox, config.proxy.idle_timeout_s
    model = ModelProxy(loop, config.model.base_url, config.model.api_key.reveal(),
                       config.model.auth_token.reveal(), on_usage, max_connections=cap, idle_timeout_s=idle,
                       body_policy=BodyPolicy.parse(config.proxy.allowed_server_tools, config.proxy.max_request_bytes))
    oom = OomWatcher()
    mount_root.mkdir(parents=True, exist_ok=True)
    for part in (sb.mount_root, mount_root):
        part.chmod(0o711)
    kit = KitConfig(mount_root, cli_binary(), Limits(sb.memory_mb, sb.cpus, sb.pids, sb.disk_mb, sb.tmp_mb),
                    sb.start_cpu_boost_s)
    launcher_box: list[IsolatingLauncher] = []
    egress = EgressProxy(loop, lambda gate, decision: launcher_box[0].egress_decided(gate, decision),
                         egress_pins(config.proxy), max_connections=cap, idle_timeout_s=idle)
    zygote = _zygote(config, metrics)
    # A runner's sandboxes get the session's spend in their launch order; a standalone one reads it here.
    spent = recorder.spent_before_start if divert is None else None
    launcher = IsolatingLauncher(kit, UidPool(sb.uid_base, sb.uid_count), layout, model, egress, oom, on_event,
                                 Ports(config.proxy.model_port, config.proxy.egress_port), zygote, spent)
    launcher_box.append(launcher)
    log.info("sandboxes: bwrap, cgroup %s (an equal CPU weight per tenant), uids %d+, workspace images, "
             "model proxy -> %s", layout.mode, sb.uid_base, config.model.base_url)

    def remove_mount_root() -> None:
        cgroups.remove_tenant_levels(layout)
        for empty in (mount_root, *layout.parents.values()):
            with contextlib.suppress(OSError):
                empty.rmdir()  # empty once every sandbox was torn down

    closers = [*([zygote.close] if zygote else []), remove_mount_root, recorder.close,
               loop.stop, oom.close, launcher.close]
    return Services(launcher, report, closers, loop.answers, zygote)


def instance_of(data_dir: Path) -> str:
    """The daemon's instance: the level of its cgroups under ``ashd-sandboxes`` and of its run
    dirs under the mount root, one per data dir, so daemons side by side never touch each other's."""
    return hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:12]


def _sweep(layout: cgroups.CgroupLayout, sandboxes: Path, mount_root: Path) -> None:
    """Before any sandbox of this daemon starts: end and remove what an earlier run of it left.

    Everything here is scoped to this daemon (its cgroup instance level, its data dir, its
    mount root); none of its sandboxes can be running yet. Processes first (they keep mounts
    busy), then mounts, loop devices and run dirs.
    """
    cgroups.sweep(layout)
    reaper.reap([sandboxes, mount_root])
    reaper.detach_loops([sandboxes])
    reaper.remove_run_dirs(mount_root)
