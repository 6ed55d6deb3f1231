"""The ashd process: ordered start-up, serving, and phased shutdown.

Start: data dir -> store (migrations, recovery) -> bootstrap key -> sandbox services -> the
root supervisor starts its children in order, each answering a ping before the next: store
-> sandbox services -> pool -> session supervisor -> HTTP listener -> READY=1 (the store and
the services are opened first, since everything is built over them; as children they are
pinged and stopped in order).
Stop (SIGTERM/SIGINT): the root stops its children in reverse (stop accepting, sessions, the
pool, which ends every bridge: TERM, grace, KILL; the sandbox services; the store, once the
running streams have stored their ``error``/``done``) -> close connections. A second signal
forces exit. If the supervision tree gives up (a long-lived actor keeps crashing), ashd
stops the same way and exits with ``systemd.EXIT_TREE_FAILED``, so systemd restarts it.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Any

import tornado.httpserver

from ashd import __version__, systemd
from ashd.config import Config, mask_url
from ashd.evals.grader import ModelGrader
from ashd.evals.runner import EvalRunner, interrupt_left_runs
from ashd.http.agents import prewarm_count
from ashd.http.app import make_app
from ashd.http.auth import KeyHasher, bootstrap_key
from ashd.http.context import AppContext
from ashd.http.health import COORDINATOR_ID
from ashd.http.queue_worker import QueueWorker
from ashd.layout import Layout
from ashd.listener import listener_child
from ashd.metrics import Metrics
from ashd.runtime.fanout import StreamFanout
from ashd.runtime.local import LocalRuntime
from ashd.runtime.offload import Offload
from ashd.sandbox import services as sandbox_services
from ashd.sandbox.launcher import Launcher
from ashd.service_children import services_child, store_child
from ashd.states import SandboxState
from ashd.store import Store
from ashd.store.recovery import close_cut_off_turns, fail_interrupted_starts

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 210 * 1024 * 1024
STREAM_DRAIN_S = 5.0
TREE_PING_S = 5.0  # the actor tree must answer within this for each watchdog ping


class Daemon:
    def __init__(self, config: Config, launcher: Launcher | None = None) -> None:
        self._config = config
        self._launcher = launcher  # None: chosen at start from [sandbox] (see sandbox/services.py)
        self._stop = asyncio.Event()
        self._signals = 0
        self._exit_code = 0

    def request_stop(self, signum: int | None = None) -> None:
        """Loop thread only. The first call starts a graceful stop; a second forces exit."""
        self._signals += 1
        if self._signals > 1:
            log.warning("second signal: exiting immediately")
            os._exit(1)
        log.info("received %s; shutting down", signal.Signals(signum).name if signum else "stop request")
        self._stop.set()

    def _give_up(self, reason: str) -> None:
        """Loop thread. The supervision tree gave up: stop, and exit non-zero."""
        log.critical("stopping ashd: the supervision tree gave up (%s)", reason)
        self._exit_code = systemd.EXIT_TREE_FAILED
        self._stop.set()

    async def serve(self) -> int:
        config = self._config
        layout = Layout(config.data_dir)
        layout.create()
        store = Store(config.database_url)
        store.migrate()
        log.info("store ready: %s", mask_url(config.database_url))
        hasher = KeyHasher(config.auth)
        written = bootstrap_key(store, hasher, layout.key_file, bool(config.auth.api_key))
        if written:
            log.info("bootstrap API key written to %s (mode 0600); ashctl on this machine finds it there",
                     written)
        store.mark_all_sandboxes(SandboxState.COLD.value)
        close_cut_off_turns(store)
        fail_interrupted_starts(store)
        interrupted = interrupt_left_runs(store)
        if interrupted:
            log.warning("evals: %d run(s) left running by a previous run of ashd are marked interrupted",
                        interrupted)
        requeued = store.requeue_processing_items()
        if requeued:
            log.info("prompt queue: %d item(s) left processing by a previous run are pending again", requeued)
        loop = asyncio.get_running_loop()
        live: list[LocalRuntime] = []  # the runtime, once built: sandbox events reach its turns

        def notify(tenant: str, session: str, payload: dict[str, Any]) -> None:
            if live:
                loop.call_soon_threadsafe(live[0].notice, session, payload)

        metrics = Metrics()
        sandboxes = sandbox_services.start(config, store, notify, metrics) if self._launcher is None else None
        launcher = sandboxes.launcher if sandboxes is not None else self._launcher
        assert launcher is not None
        isolation = sandboxes.report.to_json() if sandboxes else {"launcher": launcher.name}
        offload = Offload()
        fanout = StreamFanout.start(store, loop)  # None on SQLite: nothing to fan out
        runtime, children = LocalRuntime.build(
            config, store, launcher, offload, metrics, limit_turn=getattr(launcher, "limit_turn", None),
            prewarm=lambda agent: prewarm_count(agent, config.pool.prewarm_per_agent), fanout=fanout)
        live.append(runtime)
        ctx = AppContext(config=config, store=store, runtime=runtime, offload=offload, hasher=hasher,
                         metrics=metrics)
        metrics.watch(runtime.live_figures, COORDINATOR_ID, ctx.started_at)
        grader = ModelGrader(config.model, config.evals.grader_model, config.evals.grader_timeout_s)
        ctx.eval_runner = EvalRunner(ctx, grader)
        server = tornado.httpserver.HTTPServer(make_app(ctx, isolation, config.debug.fault_injection),
                                               max_body_size=MAX_BODY_BYTES, xheaders=False)
        http = listener_child(loop, server, config.server.host, config.server.port)

        def drain() -> None:  # on the root's thread, while the daemon awaits the tree's stop
            asyncio.run_coroutine_threadsafe(runtime.drain(STREAM_DRAIN_S), loop).result(STREAM_DRAIN_S + 1)

        services = [services_child(sandboxes)] if sandboxes is not None else []
        if config.debug.fault_injection:
            log.warning("FAULT INJECTION IS ON (debug.fault_injection / ASH_FAULT_INJECTION): "
                        "POST /api/internal/faults crashes actors on request. TEST ONLY: never in production")
        try:
            # READY=1 only when the store is migrated (above) and every child answered its ping.
            await offload.read(runtime.supervise, [store_child(store, drain), *services, *children, http],
                               lambda reason: loop.call_soon_threadsafe(self._give_up, reason))
            self._install_signals()
            log.info("ashd %s listening on http://%s:%d (data: %s, sandboxes: %s)", __version__,
                     config.server.host, config.server.port, config.data_dir,
                     launcher.name)
            systemd.notify(f"READY=1\nSTATUS=serving on {config.server.host}:{config.server.port}")
            watchdog = self._start_watchdog(runtime)
            queue = QueueWorker(ctx)
            queue.start()
            await self._stop.wait()
            ctx.stopping = True
            await ctx.eval_runner.stop()  # before the tree: its cases' sessions are ended
            await queue.stop()
            systemd.notify("STOPPING=1")
            if watchdog is not None:
                watchdog.stop()
            await runtime.stop_tree()  # in reverse: HTTP, sessions, pool, sandbox services, store
            await server.close_all_connections()
        finally:  # what the tree did not stop (it never started, or gave up): both are idempotent
            runtime.shutdown()
            if fanout is not None:
                fanout.stop()
            if sandboxes is not None:
                sandboxes.stop()
            offload.shutdown()
            store.close()
        log.info("ashd stopped%s", f" (exit code {self._exit_code})" if self._exit_code else "")
        return self._exit_code

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop, signum)

    def _start_watchdog(self, runtime: LocalRuntime) -> systemd.Watchdog | None:
        """Pings systemd only while the runtime's actor tree answers (docs/operations.md)."""
        interval = systemd.watchdog_interval_s()
        if interval is None:
            return None

        async def probe() -> bool:
            return await runtime.answers(TREE_PING_S)

        watchdog = systemd.Watchdog(interval, probe)
        watchdog.start()
        return watchdog
