"""SandboxActor: one bridge process — spawn, ready handshake, exit watch, stop.

Runs on its own pykka thread. ``start_bridge`` blocks that thread (not the IOLoop) until
the bridge writes its ready byte or the timeout passes. A watcher thread waits on the
process and tells the pool when it exits; stops initiated here are marked expected. If
this actor crashes, ``on_failure`` kills the bridge's process group without marking it
expected, so the watcher cleans up and the pool and the session learn of the loss as usual.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from types import TracebackType

import psutil
import pykka

from ashd.actors.exits import ExitBoard
from ashd.actors.faults import FaultTarget
from ashd.actors.messages import BridgeExited, SandboxStarted
from ashd.errors import SandboxFailed, StartTimedOut
from ashd.sandbox import logpump
from ashd.sandbox.launcher import BridgeProcess, Detached, Launcher, SandboxSpec
from ashd.sandbox.logring import LogBook
from ashd.wire import protocol

log = logging.getLogger(__name__)

LOG_TAIL_BYTES = 2000
CLEANUP_WAIT_S = 30.0
PUMP_DRAIN_S = 1.0
ABORT_POLL_S = 0.1  # how soon a start waiting for its bridge sees ``abort`` (a shutdown)


class SandboxActor(FaultTarget, pykka.ThreadingActor):
    def __init__(
        self,
        spec: SandboxSpec,
        launcher: Launcher,
        on_exit: Callable[[BridgeExited], object],
        ready_timeout_s: float,
        stop_grace_s: float,
        exits: ExitBoard | None = None,
        logs: LogBook | None = None,
        abort: threading.Event | None = None,
    ) -> None:
        """``logs``: where the process's stderr and lifecycle lines go (a private book if None).
        ``abort``: set from any thread (the pool, at shutdown) to end a start in progress at
        once, which this actor's mailbox could not do: ``start_bridge`` holds its thread."""
        super().__init__()
        self._abort = abort or threading.Event()
        self._spec = spec
        self._launcher = launcher
        self._on_exit = on_exit
        self._ready_timeout_s = ready_timeout_s
        self._stop_grace_s = stop_grace_s
        self._proc: BridgeProcess | None = None
        self._stopping = threading.Event()
        self._detached = False  # handed over alive (a runner's sandbox): its "exit" is no process's end
        self._cleaned = threading.Event()  # set by the watcher once the launcher cleaned up
        self._exits = exits
        self._ring = (logs or LogBook()).ring(spec.session_id)
        self._pump: threading.Thread | None = None

    def start_bridge(self) -> SandboxStarted:
        """Spawn and wait for readiness. Raises SandboxFailed (with the log tail), also when
        the start is aborted (``abort`` set: ashd is stopping) before or while it waits."""
        began = time.monotonic()
        if self._abort.is_set():  # the pool dropped this sandbox before its start came: spawn nothing
            raise SandboxFailed(f"the start of session {self._spec.session_id}'s agent process was cancelled")
        try:
            self._proc = self._launcher.spawn(self._spec)
        except OSError as exc:
            self._ring.add("system", f"agent process could not start: {exc}")
            raise SandboxFailed(f"cannot start the agent process: {exc}") from exc
        if self._proc.stderr is not None:
            self._pump = logpump.start(self._proc.stderr, self._spec.log_path, self._ring,
                                       f"log-{self._spec.sandbox_id[:8]}")
        answer = self._await_ready(self._proc)
        if answer != "ready":
            slow = answer == "timeout" and self._proc.poll() is None  # still starting at the deadline: load
            self._kill_group(self._proc, grace_s=0.5)
            if self._pump is not None:
                self._pump.join(PUMP_DRAIN_S)  # its last lines are the useful ones
            self._ring.add("system", f"agent process did not become ready (exit code {self._proc.returncode})")
            self._launcher.cleanup(self._spec)
            self._cleaned.set()  # no watcher runs for a start that failed
            if answer == "aborted":
                raise SandboxFailed(f"the start of session {self._spec.session_id}'s agent process was cancelled "
                                    "before it was ready (ashd is stopping it)")
            if slow:
                raise StartTimedOut(
                    f"agent process for session {self._spec.session_id} was not ready within "
                    f"{self._ready_timeout_s:g}s (the host may be busy); last log lines:\n{self._log_tail()}")
            raise SandboxFailed(
                f"agent process for session {self._spec.session_id} did not become ready "
                f"(exit code {self._proc.returncode}); last log lines:\n{self._log_tail()}"
            )
        threading.Thread(target=self._watch, args=(self._proc,), daemon=True,
                         name=f"watch-{self._spec.sandbox_id[:8]}").start()
        elapsed = (time.monotonic() - began) * 1000
        self._ring.starts += 1
        verb = "started" if self._ring.starts == 1 else f"restarted (start {self._ring.starts})"
        self._ring.add("system", f"agent process {verb} (pid {self._proc.pid}, launcher {self._launcher.name}, "
                                 f"ready in {elapsed:.0f} ms)")
        log.info("sandbox %s ready for session %s in %.0f ms (pid %d, launcher %s)",
                 self._spec.sandbox_id, self._spec.session_id, elapsed, self._proc.pid, self._launcher.name)
        return SandboxStarted(self._spec.sandbox_id, str(self._spec.socket_path), self._proc.pid, elapsed)

    def _await_ready(self, proc: BridgeProcess) -> str:
        """``ready`` (the byte R came), ``closed`` (stdout ended or said something else),
        ``timeout``, or ``aborted`` (``abort`` was set: looked at every ``ABORT_POLL_S``)."""
        # A selector, not select(): select() fails for descriptors numbered 1024 and up, which
        # a busy ashd reaches.
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        deadline = time.monotonic() + self._ready_timeout_s
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(fd, selectors.EVENT_READ)
                while (left := deadline - time.monotonic()) > 0:
                    if self._abort.is_set():
                        return "aborted"
                    if not selector.select(min(left, ABORT_POLL_S)):
                        continue
                    chunk = os.read(fd, 1)
                    return "ready" if chunk == protocol.READY_BYTE else "closed"
            return "timeout"
        finally:
            proc.stdout.close()

    def _watch(self, proc: BridgeProcess) -> None:
        code = proc.wait()
        try:
            reason = self._launcher.exit_reason(self._spec, code)
        finally:
            self._launcher.cleanup(self._spec)
            self._cleaned.set()
        fact = BridgeExited(self._spec.sandbox_id, self._spec.session_id, code, self._stopping.is_set(), reason)
        if self._pump is not None:
            self._pump.join(PUMP_DRAIN_S)
        how = f"killed by signal {fact.signal}" if fact.signal else f"exit code {code}"
        self._ring.add("system", f"agent process exited ({how}{'; ' + reason if reason else ''}"
                                 f"{'' if fact.expected else '; unexpected'})")
        if self._exits is not None and not self._detached:
            # A detached bridge lives on: were its pid recorded as exited, the adopter of the
            # same process (the same pid) would be judged dead at its first turn.
            self._exits.record(proc.pid, fact)
        if not fact.expected:
            log.warning("sandbox %s of session %s exited unexpectedly (code %s%s)",
                        fact.sandbox_id, fact.session_id, code, f"; {reason}" if reason else "")
        self._on_exit(fact)

    def stop_bridge(self, grace_s: float | None = None) -> int | None:
        """TERM the process group, wait the grace period, then KILL it; returns once the
        launcher has cleaned up too, so the same sandbox can start again at once. Idempotent.

        ``grace_s``: instead of the configured grace (0: KILL at once, for a wedged agent).
        SIGKILL ends the bridge even when it is stopped (SIGSTOP); the sandbox dies with it.
        """
        self._stopping.set()
        if self._proc is None:
            return None
        code = self._kill_group(self._proc, self._stop_grace_s if grace_s is None else grace_s)
        if not self._cleaned.wait(CLEANUP_WAIT_S):
            log.error("sandbox %s: cleanup did not finish within %.0fs", self._spec.sandbox_id, CLEANUP_WAIT_S)
        return code

    def detach_bridge(self) -> bool:
        """Give the bridge up without stopping it (a sandbox on a runner handed over to another
        coordinator: its process's ``detach``); returns once the launcher has cleaned up here.
        False when the process cannot be detached (a local one) or has already exited; raises
        SandboxFailed when the runner refused (the caller stops it instead)."""
        proc = self._proc
        detach = getattr(proc, "detach", None)
        if proc is None or detach is None or proc.poll() is not None:
            return False
        self._stopping.set()  # the exit that follows is ours, not a crash
        self._detached = True
        try:
            detach()
        except BaseException:
            self._detached = False
            raise
        if not self._cleaned.wait(CLEANUP_WAIT_S):
            log.error("sandbox %s: cleanup did not finish within %.0fs", self._spec.sandbox_id, CLEANUP_WAIT_S)
        return True

    def on_stop(self) -> None:
        self.stop_bridge()

    def on_failure(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                   tb: TracebackType | None) -> None:
        """Crashed: kill the bridge at once (an unexpected exit: the watcher tells the pool)."""
        if self._proc is not None:
            self._kill_group(self._proc, grace_s=0.0)

    @staticmethod
    def _kill_group(proc: BridgeProcess, grace_s: float) -> int:
        if isinstance(proc, Detached):  # a bridge on a runner: no local group to signal
            return proc.stop_group(grace_s)
        # Tools may start their own process groups; remember the whole tree up front.
        try:
            tree = psutil.Process(proc.pid).children(recursive=True)
        except psutil.Error:
            tree = []
        steps = ((signal.SIGTERM, grace_s),) if grace_s > 0 else ()
        for sig, wait_s in (*steps, (signal.SIGKILL, 5.0)):
            if proc.poll() is not None:
                break
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                continue
        # The bridge is dead; make sure nothing it started lingers in its group.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for child in tree:
            try:
                child.kill()
            except psutil.Error:
                pass
        return proc.wait()

    def _log_tail(self) -> str:
        try:
            with open(self._spec.log_path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - LOG_TAIL_BYTES))
                return fh.read().decode(errors="replace")
        except OSError:
            return "(no log)"
