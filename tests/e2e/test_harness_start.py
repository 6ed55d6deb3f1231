"""The test harness's own promise: a daemon whose start timed out is not left running."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from tests.support.daemon import AshdProcess


def test_a_start_that_times_out_stops_its_ashd(tmp_path: Path) -> None:
    daemon = AshdProcess(tmp_path / "data", "http://127.0.0.1:9")
    with pytest.raises(RuntimeError, match="did not answer"):
        daemon.start(timeout=0.2)  # far shorter than ashd takes to come up
    assert daemon.proc is not None and daemon.proc.returncode is not None
    assert not psutil.pid_exists(daemon.proc.pid) or psutil.Process(daemon.proc.pid).status() == psutil.STATUS_ZOMBIE
