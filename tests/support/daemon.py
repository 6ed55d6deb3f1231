"""A real ashd process for end-to-end tests.

Started as ``python -m ashd.cli.daemon`` with a clean environment, on a free loopback port,
with its data under a temp dir. Readiness is ``GET /health`` answering 200 (polled with a
deadline); the bootstrap key is read from the data dir like ``ashctl`` does.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psutil

from ashd.layout import Layout

REPO = Path(__file__).resolve().parents[2]
PLANTED_SECRET = "planted-secret-value-3f9a"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def remove_socket_dirs(root: Path) -> None:
    """Remove the /tmp socket directories of the data dirs under ``root`` (a data dir too long for
    socket names has one). ashd removes its own at shutdown; a test that kills a daemon, or
    makes a Layout in process and never releases it, leaves it behind."""
    for here, dirs, _ in os.walk(root):  # symlinks not followed
        if "sandboxes" in dirs:
            layout = Layout(Path(here))
            if layout.socket_dir_in_tmp:
                shutil.rmtree(layout.socket_dir, ignore_errors=True)


def _harness_guard() -> list[str]:
    """argv that stops a daemon when the harness dies (see :meth:`AshdProcess.start`)."""
    setpriv = shutil.which("setpriv")
    if setpriv is None or threading.current_thread() is not threading.main_thread():
        return []
    return [setpriv, "--pdeathsig", "TERM", "--"]


class AshdProcess:
    def __init__(self, data_dir: Path, model_url: str, database_url: str | None = None,
                 extra_env: dict[str, str] | None = None, port: int | None = None,
                 wrap: list[str] | None = None, python: str = sys.executable, repo: Path = REPO) -> None:
        """``wrap``: argv the daemon runs under, e.g. ``["prlimit", "--nofile=1024:1024", "--"]``.
        ``python``, ``repo``: another ashd's interpreter and checkout (a benchmark's baseline)."""
        self.data_dir = data_dir
        self.wrap = wrap or []
        self.python = python
        self.repo = repo
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir.parent / f"ashd-{self.port}.log"
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(data_dir.parent),
            "ANTHROPIC_BASE_URL": model_url,
            "ANTHROPIC_API_KEY": "sk-real-upstream-key",
            "ASH_DATA_DIR": str(data_dir),
            "ASH_PORT": str(self.port),
            "ASH_LOG_LEVEL": "debug",
            "ASHD_PLANTED_SECRET": PLANTED_SECRET,
            # Suites create many sessions against one daemon: generous limits (tests override).
            "ASH_RATE_LIMIT_GLOBAL": "1000000",
            "ASH_RATE_LIMIT_SESSIONS": "1000000",
            "ASH_RATE_LIMIT_AGENTS": "1000000",
            **({"ASH_DATABASE_URL": database_url} if database_url else {}),
            **(extra_env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.key = ""
        self.health_path = "/health"  # what answers 200 once it serves (a runner: /runner/health)

    def start(self, timeout: float = 60.0) -> AshdProcess:
        """Start ashd in a session of its own, so a terminal's Ctrl-C reaches only the harness,
        whose clean-up then stops it with one signal (both signals at once force ashd out
        before its sandboxes are unmounted). Started from the main thread, it also gets SIGTERM
        when the harness dies (``setpriv --pdeathsig``: the signal follows the thread that
        started it, so a daemon started from another thread is left without it)."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([*_harness_guard(), *self.wrap, self.python, "-m", "ashd.cli.daemon"],
                                         env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.repo,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ashd exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}{self.health_path}", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.05)
        else:
            self._abandon()  # not left running behind the caller's back: it has no handle to stop
            raise RuntimeError(f"ashd did not answer {self.health_path} within {timeout}s:\n{self.log()}")
        key_file = self.data_dir / "initial-api-key"
        if key_file.exists():
            self.key = key_file.read_text().strip()
        return self

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def descendants(self) -> list[psutil.Process]:
        assert self.proc is not None
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def restarted(self) -> AshdProcess:
        """A new ashd on the same data dir, port and environment (after this one stopped)."""
        again = AshdProcess(self.data_dir, self.env["ANTHROPIC_BASE_URL"], port=self.port)
        again.env = dict(self.env)
        return again.start()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Signal ashd and wait; returns its exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def __enter__(self) -> AshdProcess:
        """``with AshdProcess(...).start() as ashd`` (or ``ExitStack.enter_context``): stopped at exit."""
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _abandon(self, grace_s: float = 30.0) -> None:
        """Stop a start that did not come up: SIGTERM (its shutdown stops its sandboxes), then SIGKILL."""
        assert self.proc is not None
        try:
            self.stop(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log(self, tail: int | None = 6000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
            return text[-tail:] if tail else text
        except OSError:
            return ""


def sse_events(body: str) -> list[tuple[str, Any]]:
    """Parse an SSE body into (event, data) pairs (comments and ids ignored)."""
    out: list[tuple[str, Any]] = []
    for frame in body.replace("\r\n", "\n").split("\n\n"):
        name, data = "message", []
        for line in frame.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" "))
        if data:
            out.append((name, json.loads("\n".join(data))))
    return out


def is_bridge(cmd: str) -> bool:
    """Whether a command line is a session's bridge (not the zygote that forks them)."""
    return "ashd.bridge" in cmd and "ashd.bridge.zygote" not in cmd


def agent_processes(daemon: AshdProcess) -> list[str]:
    """Descriptions of ashd's bridge and CLI descendants (zombies included: unreaped is not gone)."""
    out = []
    for proc in daemon.descendants():
        try:
            cmd = " ".join(proc.cmdline())
        except psutil.ZombieProcess:
            cmd = f"zombie {proc.pid}"
        except psutil.NoSuchProcess:
            continue
        if is_bridge(cmd) or "claude" in cmd or cmd.startswith("zombie"):
            out.append(cmd)
    return out


def sse_frames(body: str) -> list[tuple[int | None, str, Any]]:
    """Parse an SSE body into (id, event, data) triples; comments (heartbeats) are skipped."""
    out: list[tuple[int | None, str, Any]] = []
    for block in body.replace("\r\n", "\n").split("\n\n"):
        event_id, name, data = None, "message", []
        for line in block.split("\n"):
            if line.startswith("id:"):
                event_id = int(line[3:].strip())
            elif line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" "))
        if data:
            out.append((event_id, name, json.loads("\n".join(data))))
    return out
