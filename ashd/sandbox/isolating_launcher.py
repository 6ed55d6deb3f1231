"""The default launcher: the bridge on the host, the CLI and its tools in a sandbox.

The bridge process stays outside the boundary (as ashd's user) so permission callbacks,
hooks and the session store are out of the agent's reach; the SDK's ``cli_path`` is a small
per-sandbox script that runs :mod:`ashd.sandbox.cliwrap`, which starts the CLI inside the
sandbox :class:`~ashd.sandbox.kit.SandboxKit` prepared. The bridge never sees the real model
credential either: its environment carries the session token, which the CLI presents to the
model proxy listening inside the sandbox's network namespace.

``spawn`` runs on the sandbox's actor thread; ``exit_reason`` and ``cleanup`` on its
exit-watcher thread (or the actor thread after a failed start). Thread-safe per sandbox.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shlex
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from ashd.errors import SandboxFailed
from ashd.proxy.egress import Decision, EgressGate, EgressProxy
from ashd.proxy.model import ModelProxy
from ashd.sandbox import bwrap
from ashd.sandbox.cgroups import CgroupLayout
from ashd.sandbox.kit import KitConfig, SandboxKit
from ashd.sandbox.launcher import DirectLauncher, SandboxSpec, with_transcript
from ashd.sandbox.oom import OomWatcher
from ashd.sandbox.pyrun import lean_module_argv
from ashd.sandbox.uids import UidPool
from ashd.sandbox.zygote import BridgeProcess, BridgeZygote
from ashd.user_env import RESERVED_NAMES, RESERVED_PREFIXES

log = logging.getLogger(__name__)

# (tenant id, session id, event payload) -> recorded as a session event; must not block long.
OnEvent = Callable[[str, str, dict[str, Any]], None]
TEARDOWN_WAIT_S = 30.0


@dataclass(frozen=True)
class Ports:
    model: int = 8080
    egress: int = 3128


@dataclass
class _Live:
    kit: SandboxKit
    egress: bool
    spec: SandboxSpec  # which start of the sandbox this is (an id is reused by restarts)


class IsolatingLauncher:
    name = "bwrap"
    cli_workspace = bwrap.INSIDE_WORKSPACE  # the CLI's cwd inside the sandbox (its transcript key)
    makes_disk_images = True  # each sandbox's workspace is an image admitted on the data disk

    def __init__(self, kit_config: KitConfig, uids: UidPool, cgroups: CgroupLayout, model: ModelProxy,
                 egress: EgressProxy | None, oom: OomWatcher, on_event: OnEvent, ports: Ports = Ports(),
                 zygote: BridgeZygote | None = None,
                 spent: Callable[[SandboxSpec], float] | None = None) -> None:
        """``spent``: what a session has cost before a start of its sandbox (standalone:
        ``Recorder.spent_before_start``; None where the launch order carries it, on a runner)."""
        self._kit_config = kit_config
        self._uids = uids
        self._cgroups = cgroups
        self._model = model
        self._egress = egress
        self._oom = oom
        self._on_event = on_event
        self._ports = ports
        self._bridges = DirectLauncher(zygote)
        self._spent = spent
        self._lock = threading.Lock()
        self._live: dict[str, _Live] = {}
        # Teardown (unmount, rmdir cgroups) runs here so the exit watcher reports at once; a
        # restart of the same sandbox waits for its previous teardown first.
        self._reaper = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sandbox-teardown")
        self._teardowns: dict[str, Future[None]] = {}

    def inside_env(self, spec: SandboxSpec) -> dict[str, str]:
        """The fixed (non-secret) part of the CLI's environment inside the sandbox."""
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": spec.env.get("LANG", "C.UTF-8"),
            "HOME": bwrap.INSIDE_HOME, "USER": "agent", "LOGNAME": "agent", "SHELL": "/bin/bash",
            "TMPDIR": "/tmp",  # noqa: S108 - the sandbox's private, size-bounded /tmp
            "CLAUDE_CONFIG_DIR": f"{bwrap.INSIDE_HOME}/.claude",
            "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{self._ports.model}",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1",
            # Tools run under a lower task limit than the CLI: a fork bomb cannot abort it.
            "CLAUDE_CODE_SHELL_PREFIX": bwrap.INSIDE_TOOLSHELL,
        }
        if spec.policy.egress_allow and self._egress is not None:
            proxy = f"http://127.0.0.1:{self._ports.egress}"
            for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
                env[name] = proxy
            env.update({"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
                        "NODE_USE_ENV_PROXY": "1"})
        return env

    @staticmethod
    def passthrough(spec: SandboxSpec) -> list[str]:
        """Names taken from the bridge's environment: the agent's/session's own and the token."""
        own = [k for k in spec.env if k not in RESERVED_NAMES and not k.startswith(RESERVED_PREFIXES)]
        return [*own, "ANTHROPIC_API_KEY"]

    def spawn(self, spec: SandboxSpec) -> BridgeProcess:
        with self._lock:
            leftover = self._live.get(spec.sandbox_id)
        if leftover is not None:  # the previous start of this sandbox was not cleaned up yet
            self._release(leftover)
        with self._lock:
            previous = self._teardowns.pop(spec.sandbox_id, None)
        if previous is not None:
            previous.result(timeout=TEARDOWN_WAIT_S)
        # Before anything is set up: a spend that cannot be read starts nothing.
        spent = self._spent(spec) if self._spent is not None else spec.spent_usd
        kit = SandboxKit(self._kit_config, self._uids, self._cgroups, spec.sandbox_id, spec.root,
                         spec.agent_dir, spec.policy.limits, spec.tenant_id)
        began = time.monotonic()
        try:
            kit.setup(self.inside_env(spec), self.passthrough(spec))
        except OSError as exc:
            raise SandboxFailed(f"cannot set up the sandbox: {exc}") from exc
        with self._lock:
            self._live[spec.sandbox_id] = _Live(kit, False, spec)
        try:
            token = self._serve(spec, kit, spent)
            self._oom.watch(kit.cgroup, lambda kills: self._oom_killed(spec, kit, kills))
            bridge_spec = self._bridge_spec(with_transcript(spec, kit.home), kit, token)
            kit.give_config_dir()  # what was restored is the sandbox uid's, like the rest of HOME
            set_up = time.monotonic()
            proc = self._bridges.spawn(bridge_spec)
            log.debug("sandbox %s: set up in %.1f ms (uid, image, cgroups, netns, proxies, transcript), "
                      "bridge %d spawned in %.1f ms", spec.sandbox_id, (set_up - began) * 1000, proc.pid,
                      (time.monotonic() - set_up) * 1000)
            return proc
        except BaseException:
            self.cleanup(spec)
            raise

    def _serve(self, spec: SandboxSpec, kit: SandboxKit, spent: float) -> str:
        sock = kit.netns.listen("127.0.0.1", self._ports.model)
        token = self._model.register(spec.sandbox_id, sock, {
            "session_id": spec.session_id, "tenant_id": spec.tenant_id, "agent_name": spec.agent_name,
            "budget_usd": spec.policy.max_budget_usd, "upstream_key": spec.upstream_key, "spent_usd": spent})
        if spec.policy.egress_allow and self._egress is not None:
            gate = EgressGate(spec.session_id, spec.tenant_id, spec.policy.egress_allow)
            self._egress.register(spec.sandbox_id, kit.netns.listen("127.0.0.1", self._ports.egress), gate)
            self._live[spec.sandbox_id].egress = True
        return token

    def _bridge_spec(self, spec: SandboxSpec, kit: SandboxKit, token: str) -> SandboxSpec:
        env = {k: v for k, v in spec.env.items() if k not in ("ANTHROPIC_AUTH_TOKEN", "IS_SANDBOX")}
        env.update({"ANTHROPIC_API_KEY": token, "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{self._ports.model}"})
        wrapper = spec.root / "cli"
        argv = lean_module_argv("ashd.sandbox.cliwrap", str(kit.wrapper_plan_path))
        wrapper.write_text("#!/bin/sh\nexec " + shlex.join(argv) + ' "$@"\n')
        wrapper.chmod(0o700)
        # The CLI sees /workspace and /home/agent; the bridge needs that view to map the
        # transcript mirror and to resume (see ashd/sandbox/resume.py).
        settings = dataclasses.replace(spec.settings, cli_path=str(wrapper),
                                       cli_config_dir=f"{bwrap.INSIDE_HOME}/.claude", cli_cwd=bwrap.INSIDE_WORKSPACE)
        # The session's upstream key stays with the model proxy (registered in _serve).
        return dataclasses.replace(spec, env=env, settings=settings, upstream_key=None)

    def _oom_killed(self, spec: SandboxSpec, kit: SandboxKit, kills: int) -> None:
        message = f"out of memory (limit {kit.limits.memory_mb} MiB): the kernel killed a process in the sandbox"
        log.warning("session %s: %s (%d kill(s) so far)", spec.session_id, message, kills)
        self._on_event(spec.tenant_id, spec.session_id, {
            "type": "sandbox_oom", "message": message, "limitMb": kit.limits.memory_mb, "oomKills": kills})

    def egress_decided(self, gate: EgressGate, decision: Decision) -> None:
        """Egress proxy callback (proxy loop thread): every decision becomes a session event."""
        self._on_event(gate.tenant_id, gate.session_id, {
            "type": "egress", "host": decision.host, "port": decision.port,
            "allowed": decision.allowed, "reason": decision.reason})

    def limit_turn(self, sandbox_id: str, budget_usd: float | None) -> None:
        """The model proxy binds this budget to the sandbox's next requests (a message's
        maxBudgetUsd for its turn; None ends it). Any thread."""
        self._model.limit_turn(sandbox_id, budget_usd)

    def exit_reason(self, spec: SandboxSpec, returncode: int) -> str | None:
        with self._lock:
            live = self._live.get(spec.sandbox_id)
        if live is None:
            return None
        kills = live.kit.cgroup.oom_kills()
        if kills:
            return f"out of memory (limit {live.kit.limits.memory_mb} MiB; {kills} process(es) killed)"
        return None

    def cleanup(self, spec: SandboxSpec) -> None:
        with self._lock:
            live = self._live.get(spec.sandbox_id)
        # Only this start's own resources: a newer start of the same sandbox is left alone.
        if live is not None and live.spec is spec:
            self._release(live)

    def _release(self, live: _Live) -> None:
        spec = live.spec
        with self._lock:
            if self._live.get(spec.sandbox_id) is not live:
                return
            del self._live[spec.sandbox_id]
        self._oom.unwatch(live.kit.cgroup)
        live.kit.cgroup.kill_all()
        self._model.unregister(spec.sandbox_id)
        if live.egress and self._egress is not None:
            self._egress.unregister(spec.sandbox_id)
        future = self._reaper.submit(live.kit.teardown)
        with self._lock:
            self._teardowns[spec.sandbox_id] = future

    def settled(self, sandbox_id: str, timeout_s: float = TEARDOWN_WAIT_S) -> bool:
        """Wait until this sandbox's pending teardown (unmount, uid release) has finished.

        True when nothing of it is left on the host (or nothing was pending); False after
        ``timeout_s``. Blocks the caller (a session's actor thread), never raises.
        """
        with self._lock:
            pending = self._teardowns.get(sandbox_id)
            live = sandbox_id in self._live
        if live:
            return False
        if pending is None:
            return True
        wait([pending], timeout=timeout_s)  # teardown never raises; only "done" matters here
        return pending.done()

    def close(self) -> None:
        """At shutdown, after the pool stopped every sandbox: kill and tear down any sandbox
        still set up (its stop did not finish in time: a start or stop slowed by a loaded
        host, issue #18), then finish pending teardowns (blocks). Nothing outlives ashd."""
        with self._lock:
            left = list(self._live.values())
        for live in left:
            log.warning("sandbox %s was still set up at shutdown (its stop did not finish in time); "
                        "killing its processes and tearing it down", live.spec.sandbox_id)
            self._release(live)
        self._reaper.shutdown(wait=True)

    def live_count(self) -> int:
        with self._lock:
            return len(self._live)


def event_json(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"))
