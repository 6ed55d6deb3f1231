"""An agent process's stderr goes to sandbox.log, which is on the data disk: it is rotated, so
a sandbox's log takes at most twice MAX_LOG_BYTES whatever the agent prints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ashd.sandbox import logpump
from ashd.sandbox.logring import LogRing


def test_the_log_rotates_and_keeps_the_latest_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logpump, "MAX_LOG_BYTES", 1000)
    log_path = tmp_path / "sandbox.log"
    log_path.write_bytes(b"x" * 900)  # what an earlier run of the sandbox left
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb") as stream:
        thread = logpump.start(stream, log_path, LogRing(), "pump")
        with os.fdopen(write_end, "wb") as agent:
            for i in range(500):  # ~5 KB of stderr
                agent.write(f"line {i:04d}\n".encode())
        thread.join(10)
    assert not thread.is_alive()
    older = log_path.with_name("sandbox.log.1")
    assert log_path.stat().st_size <= 1000 and older.stat().st_size <= 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sandbox.log", "sandbox.log.1"]
    current, before = log_path.read_text().splitlines(), older.read_text().splitlines()
    assert current[-1] == "line 0499"  # the latest line, and no line lost at the seam:
    assert int(before[-1].split()[1]) + 1 == int(current[0].split()[1])
