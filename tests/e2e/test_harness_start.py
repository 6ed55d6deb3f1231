"""The test harness's own promises: a daemon whose start timed out is not left running; a
Ctrl-C on a harness, or its death, stops its daemon cleanly (one signal: its sandboxes
unmounted)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.support.daemon import REPO, AshdProcess


def test_a_start_that_times_out_stops_its_ashd(tmp_path: Path) -> None:
    daemon = AshdProcess(tmp_path / "data", "http://127.0.0.1:9")
    with pytest.raises(RuntimeError, match="did not answer"):
        daemon.start(timeout=0.2)  # far shorter than ashd takes to come up
    assert daemon.proc is not None and daemon.proc.returncode is not None
    assert not psutil.pid_exists(daemon.proc.pid) or psutil.Process(daemon.proc.pid).status() == psutil.STATUS_ZOMBIE


# A harness run from a terminal: Ctrl-C raises KeyboardInterrupt in it, whatever the test
# suite's own SIGINT disposition (CI may run it with SIGINT ignored, which children inherit).
HARNESS = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path.insert(0, {repo!r})
from pathlib import Path
from tests.support.daemon import AshdProcess
with AshdProcess(Path({data!r}), "http://127.0.0.1:9").start() as daemon:
    print(daemon.proc.pid, flush=True)
    time.sleep(600)
"""


def _harness(tmp_path: Path) -> tuple[subprocess.Popen[str], int, Path]:
    """A benchmark-like harness in a session of its own (as a terminal's foreground job is), with
    its daemon started and serving: (harness, daemon pid, daemon log)."""
    data = tmp_path / "data"
    harness = subprocess.Popen([sys.executable, "-c", HARNESS.format(repo=str(REPO), data=str(data))],
                               stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert harness.stdout is not None
    with harness.stdout:
        pid = int(harness.stdout.readline())
    return harness, pid, next(tmp_path.glob("ashd-*.log"))


def _gone(pid: int, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.1)
    return False


@contextlib.contextmanager
def _harness_stopped(pid: int) -> Iterator[None]:
    """Whatever the test found, no daemon of its harness is left running."""
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            _gone(pid)


def test_a_ctrl_c_on_the_harness_stops_its_ashd_with_one_signal(tmp_path: Path) -> None:
    """A terminal's Ctrl-C goes to its foreground process group: it reaches the harness, whose
    clean-up stops ashd, and not ashd too (two signals force ashd out before it unmounts)."""
    harness, pid, log = _harness(tmp_path)
    with _harness_stopped(pid):
        os.killpg(harness.pid, signal.SIGINT)
        assert harness.wait(90) != 0 and _gone(pid)
    text = log.read_text()
    assert "received SIGTERM; shutting down" in text and "second signal" not in text
    assert "received SIGINT" not in text


def test_a_killed_harness_takes_its_ashd_down_cleanly(tmp_path: Path) -> None:
    harness, pid, log = _harness(tmp_path)
    with _harness_stopped(pid):
        harness.kill()
        harness.wait()
        assert _gone(pid), "ashd outlived its harness"
    assert "received SIGTERM; shutting down" in log.read_text()
