"""ashctl as a real process: stdout flushing and Ctrl-C while streaming."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from typing import Any

import pytest


class PipeReader:
    """Collects a child's output in a thread; a test can wait for some text."""

    def __init__(self, pipe: Any) -> None:
        self._pipe = pipe
        self._data = b""
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        while chunk := os.read(self._pipe.fileno(), 4096):
            with self._changed:
                self._data += chunk
                self._changed.notify_all()

    def wait_for(self, text: bytes, timeout: float = 10.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: text in self._data, timeout)

    def text(self) -> str:
        self._thread.join(timeout=10)
        return self._data.decode()


def start_ashctl(*argv: str, sigint: Any = signal.SIG_DFL) -> subprocess.Popen[bytes]:
    """ashctl with SIGINT set to ``sigint`` at exec, whatever this test run inherited."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    return subprocess.Popen(
        [sys.executable, "-m", "ashd.cli.ashctl", *argv],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, sigint),
    )


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("inherited", [signal.SIG_DFL, signal.SIG_IGN], ids=["sigint-default", "sigint-ignored"])
def test_ctrl_c_mid_stream_exits_130_after_printing_what_arrived(
    fake_ashd: Any, frame: Any, inherited: Any
) -> None:
    # sigint-ignored: how a background job of a non-interactive shell (a CI runner) starts it.
    fake_ashd.sse("POST", "/api/sessions/s1/messages", [
        frame("session_start", {"sessionId": "s1", "version": "0.1.0"}),
        frame("text_delta", {"delta": "Hel"}),
        threading.Event(),  # the turn never finishes: only Ctrl-C ends it
    ])
    argv = ("--server", fake_ashd.url, "--api-key", "k", "session", "send", "s1", "x")
    with start_ashctl(*argv, sigint=inherited) as proc:  # closes the pipes and reaps the child
        out, err = PipeReader(proc.stdout), PipeReader(proc.stderr)
        try:
            # Piped stdout is block-buffered by default: seeing "Hel" proves ashctl flushes.
            assert out.wait_for(b"Hel"), "delta not flushed to a pipe while streaming"
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=10) == 130
        finally:
            if proc.poll() is None:
                proc.kill()
        printed, complained = out.text(), err.text()
    assert printed == "Hel\n"
    assert complained == "ashctl: interrupted\n"


def test_closed_stdout_exits_141_without_a_traceback(fake_ashd: Any) -> None:
    fake_ashd.json("GET", "/api/sessions", {"sessions": [{"id": f"s{i}"} for i in range(50)]})
    with start_ashctl("--server", fake_ashd.url, "--api-key", "k", "session", "list") as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # like `| head` exiting before ashctl writes
        complained = proc.stderr.read().decode()
        assert proc.wait(timeout=10) == 141
    assert complained == ""
