"""The bridge's exec runner without a sandbox wrapper (the no-isolation path): exit codes,
timeouts that kill the whole group, capped output."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from ashd.bridge import execute
from ashd.wire import protocol


def run(command: str, tmp_path: Path, timeout_ms: int = 10_000, cap: int = execute.MAX_STREAM_BYTES,
        cli_path: str | None = None) -> protocol.ExecResult:
    return asyncio.run(execute.run(protocol.Exec(1, command, timeout_ms), cli_path, str(tmp_path), cap))


def test_exit_code_streams_and_cwd(tmp_path: Path) -> None:
    result = run("pwd; echo e >&2; exit 5", tmp_path)
    assert (result.exit_code, result.stdout, result.stderr) == (5, f"{tmp_path}\n", "e\n")
    assert run("kill -9 $$", tmp_path).exit_code == 137


def test_timeout_kills_the_group_including_background_children(tmp_path: Path) -> None:
    marker = tmp_path / "late"
    began = time.monotonic()
    result = run(f"(sleep 2; touch {marker}) & sleep 30", tmp_path, timeout_ms=300)
    assert time.monotonic() - began < 5
    assert result.timed_out and result.exit_code == execute.TIMEOUT_EXIT_CODE
    assert "timed out after 300 ms" in result.stderr
    time.sleep(2.5)
    assert not marker.exists()  # the background child died with the group


def test_a_background_child_holding_the_pipes_does_not_hang_the_result(tmp_path: Path) -> None:
    began = time.monotonic()
    result = run("sleep 30 & echo done", tmp_path)
    assert result.stdout == "done\n" and result.exit_code == 0 and not result.timed_out
    assert time.monotonic() - began < execute.DRAIN_AFTER_EXIT_S + 3


def test_output_is_capped_and_says_so(tmp_path: Path) -> None:
    result = run("head -c 5000 /dev/zero | tr '\\0' x; echo tail >&2", tmp_path, cap=1000)
    assert result.truncated and result.stdout == "x" * 1000
    assert result.stderr.startswith("tail\n") and "output truncated" in result.stderr


def test_a_missing_wrapper_is_reported_not_raised(tmp_path: Path) -> None:
    result = run("true", tmp_path, cli_path=str(tmp_path / "no-such-wrapper"))
    assert result.exit_code == 127 and "cannot start" in result.stderr
