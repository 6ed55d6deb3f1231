"""The ashd process: ordered start-up, serving, and phased shutdown.

Start: data dir -> store (migrations, recovery) -> bootstrap key -> what ``server.mode`` runs
(``modes.py``; standalone below) -> the root supervisor starts its children in order, each
answering a ping before the next: store -> sandbox services -> pool -> session supervisor ->
HTTP listener -> READY=1 (the store and the services are opened first, since everything is
built over them; as children they are pinged and stopped in order).
Stop (SIGTERM/SIGINT): the root stops its children in reverse (stop accepting, sessions, the
pool, which ends every bridge: TERM, grace, KILL; the sandbox services; the store, once the
running streams have stored their ``error``/``done``) -> close connections. A signal during
start-up stops the same way once the start is over. A second signal forces exit. If the
supervision tree gives up (a long-lived actor keeps crashing), ashd stops the same way and
exits with ``systemd.EXIT_TREE_FAILED``, so systemd restarts it.
"""
from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal

from ashd import __version__, systemd
from ashd.config import Config, mask_url
from ashd.http.auth import KeyHasher, bootstrap_key
from ashd.http.health import COORDINATOR_ID
from ashd.http.queue_worker import QueueWorker
from ashd.http.work_recovery import WorkRecovery, report
from ashd.layout import Layout
from ashd.listener import loop_service_child
from ashd.modes import Runtime, assemble
from ashd.sandbox.launcher import Launcher
from ashd.states import SandboxState
from ashd.store import Store
from ashd.store.recovery import close_cut_off_turns, fail_interrupted_starts, recover_claimed_work

log = logging.getLogger(__name__)

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
        # Before anything starts: a stop asked during start-up (the listener may already answer
        # /health) is then a graceful stop once the start is over, never the default action.
        self._install_signals()
        config = self._config
        mode = config.server.mode
        layout = Layout(config.data_dir)
        layout.create()
        store = Store(config.database_url)
        store.migrate()
        log.info("store ready: %s", mask_url(config.database_url))
        hasher = KeyHasher(config.auth)
        if mode != "runner":  # a runner serves no API: no key to mint
            written = bootstrap_key(store, hasher, layout.key_file, bool(config.auth.api_key))
            if written:
                log.info("bootstrap API key written to %s (mode 0600); ashctl on this machine finds it there",
                         written)
        if mode != "coordinator":  # what this process's sandboxes left behind (a coordinator has none)
            store.mark_all_sandboxes(SandboxState.COLD.value)
            close_cut_off_turns(store)
            fail_interrupted_starts(store)
        # Postgres: this daemon's liveness lock, before it claims work or recovers others'.
        lock = store.coordinator_lock(COORDINATOR_ID) if mode != "runner" else None
        if lock is not None:
            lock.acquire()
        if mode != "runner":
            report(recover_claimed_work(store, COORDINATOR_ID, starting=True), COORDINATOR_ID)
        loop = asyncio.get_running_loop()
        plan = assemble(config, store, hasher, loop, self._launcher)
        if lock is not None:  # and every few seconds: the work of coordinators gone since
            plan.children.append(loop_service_child("work recovery", loop, WorkRecovery(
                store, plan.offload, lock, config.cluster.liveness_timeout_s)))
        runtime, ctx = plan.runtime, plan.ctx
        if config.debug.fault_injection:
            log.warning("FAULT INJECTION IS ON (debug.fault_injection / ASH_FAULT_INJECTION): "
                        "POST /api/internal/faults crashes actors on request. TEST ONLY: never in production")
        try:
            # READY=1 only when the store is migrated (above) and every child answered its ping.
            await plan.offload.read(runtime.supervise, plan.children,
                                    lambda reason: loop.call_soon_threadsafe(self._give_up, reason))
            log.info("ashd %s %s listening on %s (data: %s, sandboxes: %s)", __version__, mode, plan.serving,
                     config.data_dir, plan.launcher)
            systemd.notify(f"READY=1\nSTATUS={mode}: serving on {plan.serving}")
            _freeze_startup_heap()
            watchdog = self._start_watchdog(runtime)
            queue = QueueWorker(ctx) if ctx is not None else None
            if queue is not None:
                queue.start()
            await self._stop.wait()
            if ctx is not None:
                ctx.stopping = True
                if ctx.eval_runner is not None:
                    await ctx.eval_runner.stop()  # before the tree: its cases' sessions are ended
            if queue is not None:
                await queue.stop()
            systemd.notify("STOPPING=1")
            if watchdog is not None:
                watchdog.stop()
            await runtime.stop_tree()  # in reverse: membership/HTTP, sessions, pool, sandbox services, store
            for server in plan.servers:
                await server.close_all_connections()
        finally:  # what the tree did not stop (it never started, or gave up): both are idempotent
            runtime.shutdown()
            if plan.fanout is not None:
                plan.fanout.stop()
            if plan.sandboxes is not None:
                plan.sandboxes.stop()
            plan.offload.shutdown()
            if lock is not None:
                lock.release()
            store.close()
            layout.release()
        log.info("ashd stopped%s", f" (exit code {self._exit_code})" if self._exit_code else "")
        return self._exit_code

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop, signum)

    def _start_watchdog(self, runtime: Runtime) -> systemd.Watchdog | None:
        """Pings systemd only while the runtime's actor tree answers (docs/operations.md)."""
        interval = systemd.watchdog_interval_s()
        if interval is None:
            return None

        async def probe() -> bool:
            return await runtime.answers(TREE_PING_S)

        watchdog = systemd.Watchdog(interval, probe)
        watchdog.start()
        return watchdog


def _freeze_startup_heap() -> None:
    """Move what start-up allocated (modules, the actor tree, the store's engine: about a
    million objects) out of the garbage collector's reach. A full collection walked them all
    with the event loop stopped: 130-145 ms each at start-up. Warm messages alone trigger none
    (400 measured), but a heap that grows by a quarter (many new sessions) does."""
    gc.collect()
    gc.freeze()
