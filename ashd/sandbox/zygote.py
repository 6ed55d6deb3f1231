"""ashd's side of the bridge zygote (the process itself: :mod:`ashd.bridge.zygote`).

:class:`BridgeZygote` starts the zygote once, at start-up, from the daemon's main thread (the
zygote's death signal is tied to the thread that started it), and forks a bridge per session
start. Each bridge is a :class:`ForkedBridge`, which offers what the sandbox actor uses of a
``subprocess.Popen`` (pid, stdout, stderr, poll, wait, returncode); its exit status comes
from the zygote, its parent, through a status pipe. A zygote that is gone (or never started)
makes every start a plain ``Popen`` again: starts get slower, never fail because of it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import struct
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Protocol

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


class BridgeZygote:
    """One zygote per daemon; :meth:`spawn` is thread-safe (one request at a time)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._control: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> BridgeZygote:
        """Start the zygote (from a thread that lives as long as ashd: its death signal is
        tied to it). Failing to start it only logs: starts then run as plain processes."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            # Nothing of ashd's environment: the bridges' own come with each request.
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
                   ROOM_VAR: "." * ROOM_BYTES}
            self._proc = subprocess.Popen(
                module_argv("ashd.bridge.zygote", str(theirs.fileno())), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, env=env, cwd="/", start_new_session=True, close_fds=True,
                pass_fds=(theirs.fileno(),))
        except OSError as exc:
            log.warning("bridge zygote did not start (%s); agent processes start as plain processes", exc)
            ours.close()
            return self
        finally:
            theirs.close()
        self._control = ours
        return self

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._control is not None and self._proc is not None and self._proc.poll() is None

    def spawn(self, argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> BridgeProcess:
        """Fork ``python -m ashd.bridge ARGV`` from the zygote, or Popen it if there is none."""
        if self._control is not None:
            if self.running:
                try:
                    return self._fork(argv, env, cwd)
                except OSError as exc:
                    log.warning("bridge zygote failed (%s); agent processes start as plain processes", exc)
            else:
                log.warning("bridge zygote exited; agent processes start as plain processes")
            self.close()
        return popen_bridge(argv, env, cwd)

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
        """End the zygote (bridges it forked die with it: stop them first). Idempotent."""
        with self._lock:
            control, self._control = self._control, None
        if control is not None:
            control.close()
        if self._proc is not None:
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


def popen_bridge(argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    """``python -m ashd.bridge ARGV`` as a plain child in its own session; stderr is a pipe
    (the sandbox actor tees it into sandbox.log and the log ring)."""
    return subprocess.Popen(
        module_argv("ashd.bridge", *argv),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=dict(env), cwd=cwd, start_new_session=True, close_fds=True)
