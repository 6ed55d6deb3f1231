"""The bridge's unix-socket server: one ashd connection, one turn at a time.

Everything here runs on the bridge's single asyncio loop. The SDK client is connected and
closed by :meth:`BridgeServer.serve` (the main task) because the SDK's anyio task group must
be exited by the task that entered it; turns run in a child task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from ashd.bridge import execute
from ashd.bridge.driver import Driver
from ashd.bridge.transcript import RemoteSessionStore
from ashd.wire import protocol

log = logging.getLogger(__name__)

CONNECTION_CLOSE_S = 5.0


def process_age_ms(at: float) -> float:
    """How long this process had lived at monotonic time ``at`` (ms; 10 ms resolution, -1 if unknown)."""
    try:
        with open("/proc/self/stat") as fh:
            started_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        ticks = os.sysconf("SC_CLK_TCK")
        return (time.clock_gettime(time.CLOCK_BOOTTIME) - time.monotonic() + at) * 1000 - started_ticks * 1000 / ticks
    except (OSError, ValueError, IndexError):
        return -1.0


class BridgeServer:
    def __init__(self, socket_path: Path, session_id: str, cli_path: str | None = None,
                 workspace: str | None = None) -> None:
        """``cli_path``/``workspace``: how ``exec`` commands reach the sandbox (see execute.py)."""
        self._socket_path = socket_path
        self._session_id = session_id
        self._cli_path = cli_path
        self._workspace = workspace or os.getcwd()
        self._driver: Driver | None = None
        # The SDK Protocol declares optional methods without bodies; their inherited
        # defaults are the "not implemented" markers the SDK probes for.
        self.transcripts = RemoteSessionStore(self._send)  # type: ignore[abstract]
        self._writer: asyncio.StreamWriter | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self._turn: asyncio.Task[None] | None = None
        self._background: set[asyncio.Future[object]] = set()
        self._stopping = asyncio.Event()
        self._exit_code = 0

    def stop(self, exit_code: int = 0) -> None:
        """Ask serve() to return (loop thread only)."""
        self._exit_code = max(self._exit_code, exit_code)
        self._stopping.set()

    async def serve(self, driver: Driver, on_ready: asyncio.Event | None = None) -> int:
        """Listen, connect the CLI, signal readiness, serve until stopped. Returns the exit code."""
        self._driver = driver
        self._socket_path.unlink(missing_ok=True)
        server = await asyncio.start_unix_server(
            self._on_connect, path=str(self._socket_path), limit=protocol.MAX_FRAME_BYTES
        )
        os.chmod(self._socket_path, 0o600)
        try:
            began = time.monotonic()
            await driver.connect()
            log.info("CLI connected in %.0f ms (asked for %.0f ms after this process started); serving session %s "
                     "on %s", (time.monotonic() - began) * 1000, process_age_ms(began), self._session_id,
                     self._socket_path.name)
            if on_ready is not None:
                on_ready.set()
            await self._stopping.wait()
        finally:
            server.close()
            await self._cancel_turn()
            await driver.close()  # the CLI's last transcript entries still reach ashd
            await self._close_connections()
            self._socket_path.unlink(missing_ok=True)
        return self._exit_code

    async def _close_connections(self) -> None:
        """End each ashd connection's reader at EOF, so its handler returns on its own:
        asyncio.run would otherwise cancel it, and Python 3.11's stream callback logs a
        cancelled handler as an error with a traceback."""
        if self._writer is not None:
            self._writer.close()
        if self._connections:
            await asyncio.wait(self._connections, timeout=CONNECTION_CLOSE_S)

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)
        if self._writer is not None:
            self._writer.close()  # a newer ashd connection replaces an older one
        self._writer = writer
        await self._send(protocol.Ready(pid=os.getpid(), session_id=self._session_id))
        try:
            while not self._stopping.is_set():
                line = await reader.readline()
                if not line:
                    break
                self._dispatch(protocol.decode_command(line))
        except (protocol.ProtocolError, ValueError, asyncio.LimitOverrunError) as exc:
            log.error("dropping ashd connection: %s", exc)
        except ConnectionError:
            pass
        finally:
            if self._writer is writer:
                self._writer = None
            writer.close()

    def _dispatch(self, command: protocol.Command) -> None:
        assert self._driver is not None
        if isinstance(command, protocol.TranscriptAck):
            self.transcripts.acknowledged(command)
        elif isinstance(command, protocol.Query):
            if self._turn is not None and not self._turn.done():
                self._spawn(self._send(protocol.Error("a turn is already running")))
                return
            self._turn = asyncio.ensure_future(self._run_turn(command))
        elif isinstance(command, protocol.Interrupt):
            if self._turn is not None and not self._turn.done():
                self._spawn(self._driver.interrupt())
        elif isinstance(command, protocol.Exec):
            self._spawn(self._run_exec(command))  # beside the turn, never inside it
        else:
            self.stop()

    async def _run_turn(self, query: protocol.Query) -> None:
        assert self._driver is not None
        try:
            await self._driver.run_turn(query, self._send)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # boundary: the SDK or CLI failed; report, then exit
            log.exception("turn failed")
            await self._send(protocol.Error(f"agent process failed: {exc}"))
            self.stop(exit_code=1)
        await self._send(protocol.Done(session_id=self._session_id))

    async def _run_exec(self, command: protocol.Exec) -> None:
        result = await execute.run(command, self._cli_path, self._workspace)
        await self._send(result)

    async def _cancel_turn(self) -> None:
        if self._turn is not None and not self._turn.done():
            self._turn.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._turn

    def _spawn(self, work: Coroutine[Any, Any, object]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _send(self, event: protocol.Event) -> bool:
        """Send to the current ashd connection; False if there is none (the turn goes on:
        a disconnect does not kill a turn)."""
        writer = self._writer
        if writer is None or writer.is_closing():
            return False
        try:
            writer.write(protocol.encode(event))
            await writer.drain()
        except ConnectionError:
            return False
        return True
