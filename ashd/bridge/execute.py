"""Run one ``exec`` command for ashd (bridge side, on the bridge's asyncio loop).

The command runs as ``/bin/sh -c <command>`` — the shell is the feature — inside the
sandbox: through the same ``cli_path`` wrapper the CLI starts through (cgroups, network
namespace, sandbox uid, bwrap, ``/workspace``), with ``EXEC_FLAG`` telling the wrapper to
start the shell instead of the CLI. Without a wrapper (the no-isolation launcher) it runs
in the workspace like the agent's own tools do there.

Each stream is kept up to ``MAX_STREAM_BYTES`` (the rest is read and dropped, and the
result says so). At the timeout the whole process group is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

from ashd.wire import protocol

EXEC_FLAG = "--ashd-exec"
"""First wrapper argument meaning: run the following argv instead of the CLI."""
MAX_STREAM_BYTES = 10 * 1024 * 1024
DRAIN_AFTER_EXIT_S = 1.0  # a background child may hold the pipes open after the shell exited
TIMEOUT_EXIT_CODE = 124  # as timeout(1)
EXIT_POLL_S = 0.02
_FRAME_ROOM = 64 * 1024


def exec_argv(command: str, cli_path: str | None) -> list[str]:
    """The argv that runs ``command`` with the agent's isolation (pure)."""
    shell = ["/bin/sh", "-c", command]
    return [cli_path, EXEC_FLAG, *shell] if cli_path else shell


class _Capture:
    def __init__(self, cap: int) -> None:
        self.data = bytearray()
        self.cap = cap
        self.truncated = False

    async def pump(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(64 * 1024):
            room = self.cap - len(self.data)
            if room > 0:
                self.data += chunk[:room]
            if len(chunk) > room:
                self.truncated = True

    def text(self) -> str:
        return self.data.decode(errors="replace")


async def run(req: protocol.Exec, cli_path: str | None, cwd: str, cap: int = MAX_STREAM_BYTES) -> protocol.ExecResult:
    """Run the command and always return a result (never raises, except CancelledError,
    which kills the process group first)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *exec_argv(req.command, cli_path), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            cwd=cwd, start_new_session=True, close_fds=True)
    except OSError as exc:
        return protocol.ExecResult(req.req_id, 127, "", f"cannot start the command: {exc}")
    out, err = _Capture(cap), _Capture(cap)
    assert proc.stdout is not None and proc.stderr is not None
    readers = asyncio.gather(out.pump(proc.stdout), err.pump(proc.stderr))
    timed_out = False
    try:
        if not await _exited(proc, req.timeout_ms / 1000):
            timed_out = True
            _kill_group(proc.pid)
            await _exited(proc, 5.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(readers), DRAIN_AFTER_EXIT_S)
    finally:
        _kill_group(proc.pid)  # leftovers in its group, if any
        readers.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await readers
        # Readers cut off early leave their pipe transports open; asyncio has no public close.
        transport = getattr(proc, "_transport", None)
        if transport is not None:
            transport.close()
    code = proc.returncode if proc.returncode is not None else -1
    code = 128 - code if code < 0 else code  # killed by signal N -> 128+N, as shells report it
    stderr = err.text()
    if timed_out:
        stderr += f"\n[ashd] the command timed out after {req.timeout_ms} ms and was killed\n"
        code = TIMEOUT_EXIT_CODE
    truncated = out.truncated or err.truncated
    if truncated:
        stderr += f"\n[ashd] output truncated: each stream is capped at {cap} bytes\n"
    return fit(protocol.ExecResult(req.req_id, code, out.text(), stderr, truncated, timed_out))


async def _exited(proc: asyncio.subprocess.Process, timeout_s: float) -> bool:
    """Whether the shell exited within ``timeout_s``. ``proc.wait()`` would also wait for
    every holder of its pipes (a background child), so the exit status is polled instead."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while proc.returncode is None:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            return False
        await asyncio.sleep(min(EXIT_POLL_S, left))
    return True


def fit(result: protocol.ExecResult) -> protocol.ExecResult:
    """Shrink the streams until the frame fits the protocol's frame cap (escaped control
    characters can make JSON several times larger than the raw bytes)."""
    limit = protocol.MAX_FRAME_BYTES - _FRAME_ROOM
    while len(protocol.encode(result)) > limit:
        result = protocol.ExecResult(result.req_id, result.exit_code, result.stdout[: len(result.stdout) // 2],
                                     result.stderr[: len(result.stderr) // 2], True, result.timed_out)
    return result


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
