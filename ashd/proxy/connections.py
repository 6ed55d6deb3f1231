"""Per-sandbox bounds on proxy connections: a cap on how many are open, and an idle timeout.

Every connection a sandbox opens to one of its proxies costs ashd a file descriptor (two
once it is relayed upstream). Without a bound, one agent can open connections until ashd
runs out of descriptors and stops serving every tenant. So each proxy keeps one
:class:`ConnectionTable`:

- :meth:`admit` refuses a connection at once (the caller closes it) when its sandbox already
  has ``max_per_sandbox`` open; nothing waits in a queue;
- a sweeper closes connections that moved no byte, in either direction, for ``idle_s``
  (relays call :meth:`Slot.touch` for every chunk they move), and connections that have not
  sent a whole request head within :data:`HEAD_TIMEOUT_S` (an agent holding slots open
  without using them);
- :meth:`close_sandbox` closes what a sandbox still has open when it goes away.

Proxy loop thread only (no locks): admit/release/touch are called from connection handlers,
the sweeper is a task on the same loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

HEAD_TIMEOUT_S = 30.0
SWEEP_MIN_S = 0.25
SWEEP_MAX_S = 5.0


@dataclass(eq=False)
class Slot:
    """One admitted connection."""

    sandbox_id: str
    writer: asyncio.StreamWriter
    idle_s: float
    limit_s: float  # silence allowed now: the head timeout until heard(), then idle_s
    last: float = field(default_factory=time.monotonic)
    extra: list[asyncio.StreamWriter] = field(default_factory=list)  # its upstream side, closed with it

    def touch(self) -> None:
        self.last = time.monotonic()

    def heard(self) -> None:
        """The request head arrived: from now on only the idle timeout applies."""
        self.limit_s = self.idle_s
        self.touch()

    def close(self) -> None:
        for writer in (self.writer, *self.extra):
            writer.close()


class ConnectionTable:
    def __init__(self, name: str, max_per_sandbox: int, idle_s: float) -> None:
        self._name = name
        self.max_per_sandbox = max_per_sandbox
        self.idle_s = idle_s
        self._open: dict[str, set[Slot]] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._refusals: dict[str, int] = {}

    def admit(self, sandbox_id: str, writer: asyncio.StreamWriter) -> Slot | None:
        """A slot for this connection, or None when the sandbox is at its cap (refuse it)."""
        slots = self._open.setdefault(sandbox_id, set())
        if len(slots) >= self.max_per_sandbox:
            self._note_refusal(sandbox_id)
            return None
        slot = Slot(sandbox_id, writer, self.idle_s, min(HEAD_TIMEOUT_S, self.idle_s))
        slots.add(slot)
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        return slot

    async def serve(self, sandbox_id: str, writer: asyncio.StreamWriter,
                    handle: Callable[[Slot], Awaitable[None]],
                    refuse: Callable[[asyncio.StreamWriter, int], Awaitable[None]]) -> None:
        """Run ``handle`` for one connection with its slot (released after), or ``refuse`` it
        at once when the sandbox is at its cap. Proxy loop thread."""
        slot = self.admit(sandbox_id, writer)
        if slot is None:
            await refuse(writer, self.max_per_sandbox)
            return
        try:
            await handle(slot)
        finally:
            self.release(slot)

    def release(self, slot: Slot) -> None:
        slots = self._open.get(slot.sandbox_id)
        if slots is not None:
            slots.discard(slot)
            if not slots:
                del self._open[slot.sandbox_id]

    def count(self, sandbox_id: str) -> int:
        return len(self._open.get(sandbox_id, ()))

    def close_sandbox(self, sandbox_id: str) -> None:
        """Close every connection the sandbox still has (it is gone). Idempotent."""
        for slot in list(self._open.pop(sandbox_id, ())):
            slot.close()
        self._refusals.pop(sandbox_id, None)

    def _note_refusal(self, sandbox_id: str) -> None:
        # One log line per sandbox on its first refusal, then every 1000th: a flood must not
        # turn into a flood of log lines.
        count = self._refusals[sandbox_id] = self._refusals.get(sandbox_id, 0) + 1
        if count == 1 or count % 1000 == 0:
            log.warning("%s proxy: sandbox %s is at its cap of %d open connections; refused %d connection(s) "
                        "(proxy.max_connections_per_sandbox)", self._name, sandbox_id, self.max_per_sandbox, count)

    async def _sweep(self) -> None:
        period = max(SWEEP_MIN_S, min(SWEEP_MAX_S, min(HEAD_TIMEOUT_S, self.idle_s) / 4))
        while self._open:
            await asyncio.sleep(period)
            now = time.monotonic()
            for slots in list(self._open.values()):
                for slot in [s for s in slots if now - s.last > s.limit_s]:
                    log.debug("%s proxy: closing a connection of sandbox %s silent for %.0fs", self._name,
                              slot.sandbox_id, now - slot.last)
                    slot.close()
                    slots.discard(slot)
            for key in [k for k, v in self._open.items() if not v]:
                del self._open[key]
