"""ashd's side of the bridge zygote (the process itself: :mod:`ashd.bridge.zygote`).

:class:`BridgeZygote` starts the zygote once, at start-up, from the daemon's main thread (the
zygote's death signal is tied to the thread that started it), and forks a bridge per session
start. Each bridge is a :class:`ForkedBridge`, which offers what the sandbox actor uses of a
``subprocess.Popen`` (pid, stdout, stderr, poll, wait, returncode); its exit status comes
from the zygote, its parent, through a status pipe. A zygote that is gone (or never started)
makes every start a plain ``Popen`` until it is back: a supervisor thread restarts it with
backoff (and gives up after the policy's intensity); starts get slower, never fail or wait.
Bridges forked from a zygote die with it (their death signal): their sessions recover as
after a bridge crash.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

from ashd.policy import (
    MAX_EXITS_KEPT,
    Budget,
    ChildHistory,
    Decision,
    Restart,
    RestartSpec,
    RestartType,
    decide,
)
from ashd.sandbox.pyrun import module_argv

log = logging.getLogger(__name__)

ROOM_VAR, ROOM_BYTES = "ASHD_ZYGOTE_ROOM", 1024  # ashd.bridge.zygote's (not imported: the SDK comes with it)

REQUEST = b"S"
PID_REPLY = b"P"
STATUS = struct.Struct("=i")
REPLY_TIMEOUT_S = 60.0  # the first request may wait for the zygote's imports (seconds on a busy host)
KILLED = -9  # the returncode of a bridge whose zygote died (its death signal is SIGKILL)


class BridgeProcess(Protocol):
    """What a launcher's spawn returns and the sandbox actor uses: a :class:`subprocess.Popen`,
    a :class:`ForkedBridge`, or a handle on a bridge that runs on a runner
    (ashd/sandbox/remote.py), all with this surface."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    @property
    def stdout(self) -> IO[bytes] | None: ...

    @property
    def stderr(self) -> IO[bytes] | None: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...


class ForkedBridge:
    """A bridge forked by the zygote. Its exit status is read from a pipe by a daemon thread."""

    def __init__(self, pid: int, stdout: int, stderr: int, status: int) -> None:
        self.pid = pid
        self.stdout: IO[bytes] | None = os.fdopen(stdout, "rb")
        self.stderr: IO[bytes] | None = os.fdopen(stderr, "rb")
        self._returncode: int | None = None
        self._done = threading.Event()
        threading.Thread(target=self._read_status, args=(status,), daemon=True, name=f"bridge-{pid}").start()

    @property
    def returncode(self) -> int | None:
        return self._returncode

    def _read_status(self, fd: int) -> None:
        data = b""
        try:
            while len(data) < STATUS.size:
                chunk = os.read(fd, STATUS.size - len(data))
                if not chunk:
                    break
                data += chunk
        finally:
            os.close(fd)
        self._returncode = os.waitstatus_to_exitcode(STATUS.unpack(data)[0]) if len(data) == STATUS.size else KILLED
        self._done.set()

    def poll(self) -> int | None:
        return self._returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._done.wait(timeout):
            raise subprocess.TimeoutExpired(f"bridge {self.pid}", timeout or 0.0)
        assert self._returncode is not None
        return self._returncode


ZYGOTE_RESTARTS = RestartSpec(name="bridge zygote", type=RestartType.PERMANENT)


class BridgeZygote:
    """One zygote per daemon, supervised; :meth:`spawn` is thread-safe (one request at a time).

    A supervisor thread starts the zygote and waits for it; when it dies the thread restarts it
    after the backoff of ``spec`` (:mod:`ashd.policy`) and gives up, with one error log line,
    after its intensity. Meanwhile :meth:`spawn` starts plain processes: it never waits for a
    restart. The thread lives until :meth:`close`: the zygote's death signal is tied to it.
    """

    def __init__(self, spec: RestartSpec = ZYGOTE_RESTARTS, command: Sequence[str] | None = None,
                 on_restart: Callable[[], None] | None = None, rng: random.Random | None = None) -> None:
        self._lock = threading.Lock()
        self._control: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._spec = spec
        self._command = list(command) if command is not None else module_argv("ashd.bridge.zygote")
        self._on_restart = on_restart
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._stopping = threading.Event()
        self._first = threading.Event()
        self._thread: threading.Thread | None = None
        self.restarts = 0
        self.given_up: str | None = None

    def start(self) -> BridgeZygote:
        """Start the supervisor thread and wait (bounded) for the first zygote to be started.
        Failing to start it only logs: starts then run as plain processes."""
        self._thread = threading.Thread(target=self._supervise, daemon=True, name="bridge-zygote")
        self._thread.start()
        self._first.wait(REPLY_TIMEOUT_S)
        return self

    def _supervise(self) -> None:
        history, budget = ChildHistory(), Budget(limit=MAX_EXITS_KEPT - 1)  # one child: its intensity rules
        try:
            while not self._stopping.is_set():
                proc = self._launch()
                history = history.record_start(time.monotonic())
                self._first.set()
                detail = f"exit status {proc.wait()}" if proc is not None else "it did not start"
                if self._stopping.is_set():
                    return
                self._drop(proc)
                now = time.monotonic()
                history = history.record_exit(now, abnormal=True, detail=detail)
                if not self._restart_after(decide(self._spec, history, budget, now, self._rng), detail):
                    return
                budget = budget.record(now)
        except Exception:  # boundary: the zygote dies with this thread; say why
            log.exception("bridge zygote supervision failed; agent processes start as plain processes")
        finally:
            self._first.set()

    def _restart_after(self, decision: Decision, detail: str) -> bool:
        """Log the decision and wait its backoff. False: do not restart (given up on, or closing)."""
        if not isinstance(decision, Restart):
            self.given_up = getattr(decision, "reason", detail)
            log.error("bridge zygote is not restarted any more (%s); agent processes start as "
                      "plain processes until ashd restarts", self.given_up)
            return False
        log.warning("bridge zygote died (%s): bridges it forked died with it; restart %d of %d in "
                    "%.1fs, agent processes start as plain processes meanwhile",
                    detail, decision.attempt, decision.of, decision.delay_s)
        if self._stopping.wait(decision.delay_s):
            return False
        self.restarts += 1
        if self._on_restart is not None:
            self._on_restart()
        return True

    def _launch(self) -> subprocess.Popen[bytes] | None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            # Nothing of ashd's environment: the bridges' own come with each request.
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
                   ROOM_VAR: "." * ROOM_BYTES}
            proc = subprocess.Popen(
                [*self._command, str(theirs.fileno())], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, env=env, cwd="/", start_new_session=True, close_fds=True,
                pass_fds=(theirs.fileno(),))
        except OSError as exc:
            log.warning("bridge zygote did not start (%s); agent processes start as plain processes", exc)
            ours.close()
            return None
        finally:
            theirs.close()
        with self._lock:
            self._control, self._proc = ours, proc
        return proc

    def _drop(self, proc: subprocess.Popen[bytes] | None) -> None:
        """Forget a dead zygote (its control socket) unless a newer one replaced it."""
        with self._lock:
            if proc is None or self._proc is not proc:
                return
            control, self._control = self._control, None
        if control is not None:
            control.close()

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None else None

    @property
    def running(self) -> bool:
        proc = self._proc
        return self._control is not None and proc is not None and proc.poll() is None

    def status(self) -> dict[str, Any]:
        """For /health: whether the zygote is up, its restarts, and why it was given up on."""
        return {"up": self.running, "pid": self.pid if self.running else None,
                "restarts": self.restarts, "givenUp": self.given_up}

    def spawn(self, argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> BridgeProcess:
        """Fork ``python -m ashd.bridge ARGV`` from the zygote, or Popen it if there is none
        (dead, restarting or given up on: never waits for it)."""
        if self.running:
            try:
                return self._fork(argv, env, cwd)
            except OSError as exc:
                log.warning("bridge zygote failed (%s); it is restarted, agent processes start as plain "
                            "processes meanwhile", exc)
                self._kill()
        return popen_bridge(argv, env, cwd)

    def _kill(self) -> None:
        """End a zygote that does not answer; the supervisor restarts it."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()

    def _fork(self, argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> ForkedBridge:
        request = os.memfd_create("bridge-request", os.MFD_CLOEXEC)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        status_r, status_w = os.pipe()
        theirs = (out_w, err_w, status_w, request)
        try:
            os.write(request, json.dumps({"argv": list(argv), "env": dict(env), "cwd": str(cwd)}).encode())
            with self._lock:
                control = self._control
                if control is None:
                    raise OSError("the zygote is closed")
                socket.send_fds(control, [REQUEST], list(theirs))
                control.settimeout(REPLY_TIMEOUT_S)
                reply = control.recv(16)
        except BaseException:
            for fd in (out_r, err_r, status_r):
                os.close(fd)
            raise
        finally:
            for fd in theirs:
                os.close(fd)
        pid = STATUS.unpack(reply[1:])[0] if reply[:1] == PID_REPLY and len(reply) == 1 + STATUS.size else -1
        if pid <= 0:
            for fd in (out_r, err_r, status_r):
                os.close(fd)
            raise OSError(f"the zygote could not fork a bridge (reply {reply!r})")
        return ForkedBridge(pid, out_r, err_r, status_r)

    def close(self) -> None:
        """End the zygote and its supervision (bridges it forked die with it: stop them first). Idempotent."""
        self._stopping.set()
        with self._lock:
            control, self._control = self._control, None
            proc = self._proc
        if control is not None:
            control.close()
        if proc is not None:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)


def popen_bridge(argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    """``python -m ashd.bridge ARGV`` as a plain child in its own session; stderr is a pipe
    (the sandbox actor tees it into sandbox.log and the log ring)."""
    return subprocess.Popen(
        module_argv("ashd.bridge", *argv),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=dict(env), cwd=cwd, start_new_session=True, close_fds=True)
