"""RemoteProcess: a bridge that runs on a runner, with the surface of a ``Popen`` (coordinator).

Its stdout pipe gets the ready byte when the runner reports the bridge ready, its stderr pipe
the bridge's stderr lines as the runner forwards them, and ``wait`` returns when the runner
reports the exit or the link drops (:data:`LOST_CODE`). Its ``pid`` is the coordinator's own
number for it, not the runner's (ashd/sandbox/remote.py explains why); ``runner_pid`` is the
runner's. Made and fed by :class:`~ashd.sandbox.remote.RemoteLauncher`.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from typing import IO

from ashd.errors import SandboxFailed

STOP_MARGIN_S = 30.0  # beyond the stop's grace, how long the runner has to report the exit
LOST_CODE = -9
HANDED_OVER = "handed over to another coordinator (the sandbox lives on, on its runner)"


class RemoteProcess:
    """A bridge that runs on a runner; any thread. Fed by the link's events (loop thread)."""

    def __init__(self, sandbox_id: str, stop: Callable[[float], None],
                 release: Callable[[], None] = lambda: None) -> None:
        self.sandbox_id = sandbox_id
        self.pid = 0  # unique in this coordinator once launched (see the module doc)
        self.runner_pid = 0  # the bridge's pid on its runner
        self.returncode: int | None = None
        self.reason: str | None = None
        self.adopted = False  # the runner handed over a live sandbox (no start)
        self._stop = stop
        self._release = release
        self._exited = threading.Event()
        ready_r, self._ready_w = os.pipe()
        err_r, self._err_w = os.pipe()
        self.stdout: IO[bytes] | None = os.fdopen(ready_r, "rb", buffering=0)
        self.stderr: IO[bytes] | None = os.fdopen(err_r, "rb")
        self._lock = threading.Lock()

    # -- facts from the runner (loop thread) ----------------------------------------------

    def ready(self) -> None:
        with self._lock:
            if self._ready_w >= 0:
                os.write(self._ready_w, b"R")
                self._close_ready()

    def line(self, text: str) -> None:
        with self._lock:
            if self._err_w >= 0:
                with contextlib.suppress(OSError):  # nobody drains a failed start's pipe
                    os.write(self._err_w, text.encode(errors="replace").rstrip(b"\n")[:65536] + b"\n")

    def exited(self, code: int, reason: str | None) -> None:
        """Idempotent: the first exit wins (a lost link after a reported exit changes nothing)."""
        with self._lock:
            if self.returncode is not None:
                return
            self.returncode, self.reason = code, reason
            self._close_ready()
            if self._err_w >= 0:
                os.close(self._err_w)
                self._err_w = -1
        self._exited.set()

    def close_pipes(self) -> None:
        """Close the read ends (a start that failed: nobody reads them)."""
        for stream in (self.stdout, self.stderr):
            if stream is not None:
                stream.close()

    def _close_ready(self) -> None:
        if self._ready_w >= 0:
            os.close(self._ready_w)
            self._ready_w = -1

    # -- the Popen surface (any thread) ---------------------------------------------------

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._exited.wait(timeout):
            raise TimeoutError(f"sandbox {self.sandbox_id} still running")
        assert self.returncode is not None
        return self.returncode

    def detach(self) -> None:
        """Give the sandbox up on its runner without stopping it (a handover to another
        coordinator): the runner keeps it for the next owner; here it has exited (code 0,
        :data:`HANDED_OVER`). Raises SandboxFailed if the runner did not take the release."""
        if self.returncode is not None:
            raise SandboxFailed(f"sandbox {self.sandbox_id} has already exited")
        self._release()
        self.exited(0, HANDED_OVER)

    def stop_group(self, grace_s: float) -> int:
        """Ask the runner to stop the sandbox (TERM, grace, KILL there); wait for its exit."""
        if self.returncode is None:
            self._stop(grace_s)
        if not self._exited.wait(grace_s + STOP_MARGIN_S):
            self.exited(LOST_CODE, "the runner did not report the sandbox's exit")
        return self.wait()
