"""ashd's end of one bridge socket (asyncio; runs on the daemon's IOLoop).

The data plane reads the bridge's NDJSON here and nowhere else. A reader task owns the
socket: transcript appends are acknowledged on receipt and stored (through the ``sink``)
in the background — the SDK waits for the ack before it yields a turn's result, so the
database write stays off that path; a turn calls :meth:`settle` before its ``done`` to
know they are committed. ``exec_result`` events resolve the :meth:`exec` call with the same
request id, so an exec can run while a turn streams. Every other event goes to the running
turn. A link carries one turn at a time (the session actor guarantees that). If the bridge
dies mid-turn the turn ends with an ``Error`` and a synthetic ``Done`` at once, so no stream
hangs; pending execs raise BridgeGone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from ashd.mailbox import IDLE, Idle, Mailbox
from ashd.wire import protocol

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
EXEC_MARGIN_S = 10.0  # beyond the command's own timeout, for the kill and the answer
LOST = "the agent process exited unexpectedly during the turn"
"""The text of the Error a turn gets when the bridge connection drops mid-turn."""

TranscriptSink = Callable[[protocol.Transcript], Awaitable[None]]
"""Commits transcript entries; raises if they could not be stored."""


class BridgeGone(ConnectionError):
    """The bridge socket closed or never answered."""


class BridgeLink:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ready: protocol.Ready,
                 sink: TranscriptSink | None = None) -> None:
        self._reader = reader
        self._writer = writer
        self._sink = sink
        self.ready = ready
        self._events: Mailbox[protocol.Event | None] = Mailbox()  # None: the bridge is gone
        self._eof = False
        self._writes: set[asyncio.Future[None]] = set()
        self._write_errors: list[str] = []
        self._execs: dict[int, asyncio.Future[protocol.ExecResult]] = {}
        self._next_exec = 0
        self._reading = asyncio.ensure_future(self._read_loop())

    @classmethod
    async def connect(cls, socket_path: str, sink: TranscriptSink | None = None,
                      timeout: float = CONNECT_TIMEOUT_S) -> BridgeLink:
        """Connect and wait for the ``ready`` event. Raises BridgeGone."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(socket_path, limit=protocol.MAX_FRAME_BYTES), timeout
            )
            line = await asyncio.wait_for(reader.readline(), timeout)
            event = protocol.decode_event(line) if line else None
        except (TimeoutError, OSError, protocol.ProtocolError) as exc:
            raise BridgeGone(f"bridge at {socket_path} did not answer: {exc or type(exc).__name__}") from exc
        if not isinstance(event, protocol.Ready):
            writer.close()
            raise BridgeGone(f"bridge at {socket_path} sent {event!r} instead of ready")
        return cls(reader, writer, event, sink)

    @property
    def closed(self) -> bool:
        return self._eof or self._writer.is_closing()

    async def turn(self, query: protocol.Query) -> AsyncIterator[protocol.Event]:
        """Send a query and yield its events up to and including ``Done``.

        Never raises for a dead bridge: it yields ``Error`` then ``Done`` instead.
        """
        async for event in self.answer(self.ask(query)):
            if not isinstance(event, Idle):  # never: no quiet period asked for
                yield event

    def ask(self, query: protocol.Query) -> str | None:
        """Write ``query`` now, in the caller's step of the loop (before anything it scheduled
        runs, such as the commit of the turn's first rows: the agent starts on the query
        meanwhile). Not awaited: a query is one line, buffered if the socket is full. None when
        written; why not when the bridge is not reachable (for :meth:`answer`)."""
        if self._writer.is_closing():
            return "bridge link is closed"
        try:
            self._writer.write(protocol.encode(query))
        except (ConnectionError, RuntimeError) as exc:
            return str(exc) or type(exc).__name__
        return None

    @property
    def waiting(self) -> bool:
        """An event of the turn was received and not yet taken by :meth:`answer`."""
        return bool(self._events)

    async def answer(self, unsent: str | None, quiet_s: float | None = None) -> AsyncIterator[protocol.Event | Idle]:
        """The events of the query :meth:`ask` wrote, up to and including ``Done``; ``Error``
        then ``Done`` when it could not be written (``unsent``: why) or the bridge is lost.
        ``quiet_s``: :data:`IDLE` after each quiet period that long (the turn's watchdog). The
        caller's task waits for the reader's hand-off itself: an event costs one loop step."""
        if unsent is not None:
            yield protocol.Error(f"bridge is not reachable: {unsent}")
            yield protocol.Done(self.ready.session_id)
            return
        while True:
            if not await self._events.wait(quiet_s):
                yield IDLE
                continue
            event = self._events.take()
            if event is None:
                self._events.put(None)  # stays closed for whoever asks next
                yield protocol.Error(LOST)
                yield protocol.Done(self.ready.session_id)
                return
            yield event
            if isinstance(event, protocol.Done):
                return

    async def interrupt(self) -> None:
        await self._send(protocol.Interrupt())

    async def exec(self, command: str, timeout_ms: int) -> protocol.ExecResult:
        """Run a shell command in the sandbox (beside any running turn) and return its result.

        Raises BridgeGone if the bridge is unreachable, dies, or does not answer within the
        command's timeout plus a margin.
        """
        self._next_exec += 1
        req_id = self._next_exec
        answer: asyncio.Future[protocol.ExecResult] = asyncio.get_running_loop().create_future()
        self._execs[req_id] = answer
        try:
            if self._eof:
                raise BridgeGone("bridge link is closed")
            await self._send(protocol.Exec(req_id, command, timeout_ms))
            return await asyncio.wait_for(answer, timeout_ms / 1000 + EXEC_MARGIN_S)
        except BridgeGone:
            raise
        except TimeoutError:
            raise BridgeGone("the sandbox did not answer the command in time") from None
        except (ConnectionError, RuntimeError) as exc:
            raise BridgeGone(f"bridge is not reachable: {exc}") from exc
        finally:
            self._execs.pop(req_id, None)

    async def shutdown(self) -> None:
        try:
            await self._send(protocol.Shutdown())
        except (ConnectionError, RuntimeError):
            pass
        self.close()

    async def _read_loop(self) -> None:
        try:
            while True:
                line = await self._reader.readline()
                if not line:
                    break
                event = protocol.decode_event(line)
                if isinstance(event, protocol.Transcript):
                    write = asyncio.ensure_future(self._store(event))
                    self._writes.add(write)
                    write.add_done_callback(self._writes.discard)
                    await self._send(protocol.TranscriptAck(event.req_id))
                elif isinstance(event, protocol.ExecResult):
                    waiting = self._execs.get(event.req_id)
                    if waiting is not None and not waiting.done():
                        waiting.set_result(event)
                else:
                    self._events.put(event)
        except (ConnectionError, ValueError, asyncio.LimitOverrunError, protocol.ProtocolError) as exc:
            log.error("bridge %s: bad frame, closing link: %s", self.ready.session_id, exc)
        finally:
            self._eof = True
            self._events.put(None)
            for waiting in self._execs.values():
                if not waiting.done():
                    waiting.set_exception(BridgeGone("the agent process exited during the command"))
            self._writer.close()

    async def _store(self, event: protocol.Transcript) -> None:
        try:
            if self._sink is None:
                raise RuntimeError("this link does not store transcripts")
            await self._sink(event)
        except Exception as exc:  # boundary: reported by settle() to the running turn
            log.error("session %s: transcript entries not stored: %s", self.ready.session_id, exc)
            self._write_errors.append(f"{type(exc).__name__}: {exc}")

    async def settle(self) -> list[str]:
        """Wait until every transcript append received so far is stored; return (and clear)
        the errors of those that could not be."""
        while self._writes:
            await asyncio.wait(set(self._writes))
        errors, self._write_errors = self._write_errors, []
        return errors

    async def _send(self, command: protocol.Command) -> None:
        if self._writer.is_closing():
            raise BridgeGone("bridge link is closed")
        self._writer.write(protocol.encode(command))
        await self._writer.drain()

    def close(self) -> None:
        self._writer.close()

    async def wait_closed(self) -> None:
        self.close()
        try:
            await self._writer.wait_closed()
        except ConnectionError:
            pass
        await asyncio.wait({self._reading})
