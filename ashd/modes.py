"""What each ``server.mode`` runs (docs/scale-out.md): its runtime, the root supervisor's
children in start order, and its HTTP servers. The daemon (``daemon.py``) opens the store
before and runs the same serve/stop sequence over any of them.

- ``standalone``: store -> sandbox services -> pool -> sessions -> public API.
- ``coordinator``: store -> runner liveness sweep -> runner links -> session leases (Postgres)
  -> pool -> sessions -> public API; the sessions' sandboxes start on runners through the links
  (``ashd/sandbox/remote.py``; ``placement.py``: 503 "No runners available" when none has room); one coordinator
  at a time serves a session (``ashd/runtime/ownership.py``).
- ``runner``: store -> sandbox services -> pool -> sessions -> linked sandboxes (those the
  coordinators start over ``/runner/link``) -> the runner's own server
  (``/runner/*`` on ``cluster.runner_port``) -> membership (registers once the runner
  listens; on stop, deregisters first, before its sandboxes stop). No public API.

Built on the loop thread; nothing starts until the daemon supervises the children.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import tornado.httpserver

from ashd.actors import parking
from ashd.actors.children import ChildSpec
from ashd.actors.drain import RunnerDrain
from ashd.actors.runner_links import runner_links_child
from ashd.actors.sandbox_host import HostConfig, SandboxHost
from ashd.actors.supervisor import disk_ledger, make_snapshotter
from ashd.config import Config
from ashd.evals.grader import ModelGrader
from ashd.evals.runner import EvalRunner
from ashd.http.agents import prewarm_count
from ashd.http.app import make_app
from ashd.http.auth import KeyHasher
from ashd.http.context import AppContext
from ashd.http.health import COORDINATOR_ID
from ashd.http.runner_liveness import RunnerLiveness
from ashd.layout import Layout
from ashd.listener import listener_child, loop_service_child
from ashd.metrics import Metrics
from ashd.runner.coordinator_client import coordinator_post
from ashd.runner.membership import Figures, Identity, Membership
from ashd.runner.server import RunnerContext, make_runner_app
from ashd.runnerlink.endpoint import PATH as LINK_PATH
from ashd.runnerlink.endpoint import RunnerEnd, RunnerLinkHandler
from ashd.runnerlink.table import LinkTable
from ashd.runtime.facade import SessionRuntime
from ashd.runtime.fanout import StreamFanout
from ashd.runtime.local import LocalRuntime
from ashd.runtime.offload import Offload
from ashd.runtime.ownership import SessionOwnership
from ashd.sandbox import services as sandbox_services
from ashd.sandbox.launcher import Launcher
from ashd.sandbox.linked_admission import LinkedAdmission
from ashd.sandbox.placement import Placement
from ashd.sandbox.remote import RemoteLauncher
from ashd.sandbox.remote_files import remote_lookup
from ashd.service_children import services_child, store_child
from ashd.store import Store

MAX_BODY_BYTES = 210 * 1024 * 1024
STREAM_DRAIN_S = 5.0


class Runtime(SessionRuntime, Protocol):
    """The session runtime plus what the daemon does with its supervision tree."""

    def supervise(self, children: list[ChildSpec], on_give_up: Callable[[str], object]) -> None: ...

    async def stop_tree(self) -> None: ...

    def shutdown(self) -> None: ...


@dataclass
class Assembly:
    runtime: Runtime
    children: list[ChildSpec]  # the root's, in start order
    servers: list[tornado.httpserver.HTTPServer]  # their connections are closed after the tree stops
    offload: Offload
    serving: str  # where it serves, for the log and systemd's STATUS
    ctx: AppContext | None = None  # the public API's (queue worker, eval runner); None on a runner
    sandboxes: sandbox_services.Services | None = None  # stopped after the tree (also if it never started)
    launcher: str = "none"
    fanout: StreamFanout | None = None  # live events of other daemons on the same Postgres; stopped last


def assemble(config: Config, store: Store, hasher: KeyHasher, loop: asyncio.AbstractEventLoop,
             launcher: Launcher | None = None) -> Assembly:
    """``launcher``: tests' own; None: chosen at start from [sandbox] (sandbox/services.py)."""
    builders = {"standalone": _standalone, "coordinator": _coordinator, "runner": _runner}
    return builders[config.server.mode](config, store, hasher, loop, launcher)


@dataclass
class _Local:
    """The sandbox side of standalone and runner modes."""

    runtime: LocalRuntime
    children: list[ChildSpec]  # sandbox services, pool, sessions
    sandboxes: sandbox_services.Services | None
    isolation: Callable[[], dict[str, Any]]
    launcher: str


def _local(config: Config, store: Store, loop: asyncio.AbstractEventLoop, launcher: Launcher | None,
           offload: Offload, metrics: Metrics, fanout: StreamFanout | None = None,
           divert: sandbox_services.Divert | None = None) -> _Local:
    live: list[LocalRuntime] = []  # the runtime, once built: sandbox events reach its turns

    notify = _notifier(loop, live)
    sandboxes = (sandbox_services.start(config, store, notify, metrics, divert, _recorder_writes(store, offload))
                 if launcher is None else None)
    used = sandboxes.launcher if sandboxes is not None else launcher
    assert used is not None
    runtime, tree = LocalRuntime.build(
        config, store, used, offload, metrics, limit_turn=getattr(used, "limit_turn", None),
        prewarm=lambda agent: prewarm_count(agent, config.pool.prewarm_per_agent), fanout=fanout)
    live.append(runtime)
    services = [services_child(sandboxes)] if sandboxes is not None else []
    name = used.name
    isolation = sandboxes.isolation if sandboxes else lambda: {"launcher": name}
    return _Local(runtime, [*services, *tree], sandboxes, isolation, used.name)


def _offload(store: Store) -> Offload:
    """The daemon's bridge from the loop to threads. On SQLite, which takes one writer at a time
    and commits in microseconds, a turn's commits run on the loop when the writer thread is idle
    (``Offload.write_at_once``); the writer thread checkpoints the WAL for them."""
    offload = Offload()
    if store.dialect == "sqlite":
        offload.allow_writes_at_once(store.checkpoint)
    return offload


def _recorder_writes(store: Store, offload: Offload) -> sandbox_services.WriteSoon | None:
    """Where usage rows and sandbox notices are written: on SQLite, which takes one writer at a
    time, the daemon's single writer (a second writer thread would make turns' commits wait on
    the lock); on Postgres a thread of their own, so they never queue behind a turn's commits."""
    return offload.write_soon if store.dialect == "sqlite" else None


def _remote_isolation() -> dict[str, Any]:
    return {"launcher": "remote"}


def _notifier(loop: asyncio.AbstractEventLoop, live: list[LocalRuntime]) -> sandbox_services.Notify:
    """Sandbox notices reach the running turns of ``live[0]`` (the runtime, once built)."""
    def notify(tenant: str, session: str, payload: dict[str, Any]) -> None:
        if live:
            loop.call_soon_threadsafe(live[0].notice, session, payload)
    return notify


def _public_api(config: Config, store: Store, hasher: KeyHasher, runtime: Runtime, offload: Offload,
                metrics: Metrics, isolation: Callable[[], dict[str, Any]] | None,
                loop: asyncio.AbstractEventLoop) -> tuple[AppContext, tornado.httpserver.HTTPServer, ChildSpec]:
    ctx = AppContext(config=config, store=store, runtime=runtime, offload=offload, hasher=hasher, metrics=metrics)
    metrics.watch(runtime.live_figures, COORDINATOR_ID, ctx.started_at)
    ctx.eval_runner = EvalRunner(ctx, ModelGrader(config.model, config.evals.grader_model,
                                                  config.evals.grader_timeout_s))
    server = tornado.httpserver.HTTPServer(make_app(ctx, isolation, config.debug.fault_injection),
                                           max_body_size=MAX_BODY_BYTES, xheaders=False)
    return ctx, server, listener_child(loop, server, config.server.host, config.server.port)


def _drain(runtime: Runtime, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
    def drain() -> None:  # on the root's thread, while the daemon awaits the tree's stop
        asyncio.run_coroutine_threadsafe(runtime.drain(STREAM_DRAIN_S), loop).result(STREAM_DRAIN_S + 1)

    return drain


def _standalone(config: Config, store: Store, hasher: KeyHasher, loop: asyncio.AbstractEventLoop,
                launcher: Launcher | None) -> Assembly:
    offload, metrics = _offload(store), Metrics()
    fanout = StreamFanout.start(store, loop)  # None on SQLite: nothing to fan out
    local = _local(config, store, loop, launcher, offload, metrics, fanout)
    ctx, server, http = _public_api(config, store, hasher, local.runtime, offload, metrics, local.isolation, loop)
    children = [store_child(store, _drain(local.runtime, loop)), *local.children, http]
    return Assembly(local.runtime, children, [server], offload, f"http://{config.server.host}:{config.server.port}",
                    ctx, local.sandboxes, local.launcher, fanout)


def _coordinator(config: Config, store: Store, hasher: KeyHasher, loop: asyncio.AbstractEventLoop,
                 launcher: Launcher | None) -> Assembly:
    """Sessions run here as standalone (actors, turns, events, transcripts); their sandboxes
    start on runners through the links (ashd/sandbox/remote.py)."""
    offload, metrics = _offload(store), Metrics()
    cluster = config.cluster
    remote: list[RemoteLauncher] = []
    live: list[LocalRuntime] = []  # what runners report of their sandboxes reaches its turns
    table = LinkTable(loop, config.auth.internal_secret.reveal(), lambda mux: remote[0].serve(mux))
    ownership = _ownership(store, offload, loop, metrics)
    remote.append(RemoteLauncher(loop, table.link_of, Placement(store, cluster.liveness_timeout_s,
                                                                lambda runner: table.state(runner).connected),
                                 sandbox_services.Recorder(store, _notifier(loop, live), metrics,
                                                           _recorder_writes(store, offload)),
                                 ownership.leases if ownership is not None else None))
    fanout = StreamFanout.start(store, loop)  # every coordinator serves every session's stream
    runtime, tree = LocalRuntime.build(config, store, launcher or remote[0], offload, metrics, fanout=fanout,
                                       ownership=ownership)
    live.append(runtime)
    ctx, server, http = _public_api(config, store, hasher, runtime, offload, metrics, _remote_isolation, loop)
    ctx.remote_files = remote_lookup(loop, table.link_of)  # the files API reads the runners' workspaces
    liveness = loop_service_child("runner liveness", loop, RunnerLiveness(store, offload, config.cluster, metrics))
    drain = RunnerDrain(store, cluster.liveness_timeout_s, remote[0].hosted_on,
                        lambda runner: table.state(runner).connected, runtime.move_off)
    links = runner_links_child(store, table, cluster.heartbeat_interval_s, cluster.liveness_timeout_s, drain.look)
    leases = [loop_service_child("session leases", loop, ownership)] if ownership is not None else []
    children = [store_child(store, _drain(runtime, loop)), liveness, links, *leases, *tree, http]
    return Assembly(runtime, children, [server], offload,
                    f"http://{config.server.host}:{config.server.port} as coordinator {COORDINATOR_ID}", ctx,
                    fanout=fanout)


def _ownership(store: Store, offload: Offload, loop: asyncio.AbstractEventLoop,
               metrics: Metrics) -> SessionOwnership | None:
    """The coordinators' session leases on a shared Postgres (ashd/runtime/ownership.py); None
    on SQLite, where this coordinator is the only one and owns every session."""
    box: list[SessionOwnership] = []
    leases = store.session_leases(COORDINATOR_ID, lambda s, r: box[0].asked(s, r),
                                  lambda r, a: box[0].answered(r, a), lambda lost: box[0].lost(lost))
    if leases is None:
        return None
    box.append(SessionOwnership(leases, offload, loop, lambda answer: metrics.handovers.labels(answer).inc()))
    return box[0]


def _runner(config: Config, store: Store, hasher: KeyHasher, loop: asyncio.AbstractEventLoop,
            launcher: Launcher | None) -> Assembly:
    offload, metrics = _offload(store), Metrics()
    hosts: list[SandboxHost] = []  # a linked sandbox's usage and notices go up its link
    local = _local(config, store, loop, launcher, offload, metrics,
                   divert=lambda session, kind, body: bool(hosts) and hosts[0].divert(session, kind, body))
    cluster = config.cluster

    used = local.sandboxes.launcher if local.sandboxes is not None else launcher
    assert used is not None
    # What the runner holds at most: ASH_MAX_SANDBOXES, or fewer when memory bounds the warm sessions.
    capacity = min(config.pool.max_sandboxes, parking.warm_cap(config.pool.max_warm_sessions))
    admission = LinkedAdmission(capacity, disk_ledger(config, store, used), config.sandbox.disk_mb)
    host = SandboxHost(HostConfig(Layout(config.data_dir), used, config.model, config.pool.bridge_ready_timeout_s,
                                  config.pool.stop_grace_s, getattr(used, "cli_workspace", None),
                                  make_snapshotter(config), admission), loop)
    hosts.append(host)

    async def figures() -> Figures:
        own = pool_figures(await local.runtime.pool_stats())
        return Figures(own.active + host.count, own.warming, {**own.stats, "linked": host.count})

    identity = Identity(runner_id(config), cluster.runner_advertise_host or cluster.runner_host, cluster.runner_port,
                        capacity)
    membership = Membership(identity, coordinator_urls(config), coordinator_post(config.auth.internal_secret.reveal()),
                            figures, cluster.heartbeat_interval_s, fence_after_s=cluster.liveness_timeout_s,
                            on_fenced=host.fence, on_restored=host.restore)
    end = RunnerEnd(config.auth.internal_secret.reveal(), identity.runner_id, host.serve,
                    generation=lambda: membership.generation, on_lost=host.link_lost)
    app = make_runner_app(RunnerContext(membership, figures), [(LINK_PATH, RunnerLinkHandler, {"end": end})])
    server = tornado.httpserver.HTTPServer(app, xheaders=False)
    children = [store_child(store, _drain(local.runtime, loop)), *local.children,
                loop_service_child("linked sandboxes", loop, host),
                listener_child(loop, server, cluster.runner_host, cluster.runner_port, "runner http"),
                loop_service_child("membership", loop, membership)]
    serving = (f"http://{cluster.runner_host}:{cluster.runner_port}/runner/* as runner {identity.runner_id} "
               f"(coordinators: {', '.join(coordinator_urls(config))})")
    return Assembly(local.runtime, children, [server], offload, serving, None, local.sandboxes, local.launcher)


def runner_id(config: Config) -> str:
    return config.cluster.runner_id or f"runner-{socket.gethostname()}-{os.getpid()}"


def coordinator_urls(config: Config) -> list[str]:
    return [url.strip() for url in config.cluster.server_url.split(",") if url.strip()]


def pool_figures(stats: Any) -> Figures:
    """A runner's load from its pool's stats: live sandboxes (not cold, not starting), starting ones."""
    return Figures(active=max(0, stats.total - stats.cold - stats.warming), warming=stats.warming, stats={
        "total": stats.total, "cold": stats.cold, "warming": stats.warming, "warm": stats.warm,
        "waiting": stats.waiting, "running": stats.running, "maxCapacity": stats.max_capacity})
