"""Start admission: at most N sandbox starts run at once; the rest queue, fair across tenants.

A burst of creates must not start every sandbox and CLI at once: on a small host none of them
becomes ready within the readiness timeout, they are all killed and retried, and the burst
fails (issue #18). So a start attempt (``ashd/actors/start.py``) holds a slot of the shared
:class:`StartGate` from before it builds its files until its bridge is ready or the attempt
failed. Waiting starts are served **round robin per tenant** (one tenant's 64 queued starts
do not delay another tenant's one start by 64 turns), FIFO within a tenant. Past
``max_queued`` waiting starts a new one is refused at once with
:class:`~ashd.errors.Unavailable` (503 with ``Retry-After``), never after a long hang,
unless its tenant holds less than its **fair share** of the bound (``max_queued`` divided by
the tenants waiting, itself included): one tenant's burst that filled the queue does not
refuse another tenant's starts. The queue then holds at most ``2 * max_queued``.

A tenant with no start running and none waiting may also take one of ``SPARE_SLOTS`` slots
beyond the bound: its one start (a new user's first chat) does not wait for another tenant's
burst to free a slot. At most ``slots + SPARE_SLOTS`` starts run at once.

:class:`StartQueue` is the pure scheduling (no threads, an injected clock); :class:`StartGate`
wraps it with a lock and one event per waiter. Thread-safe; :meth:`StartGate.acquire` blocks
the calling start thread while queued (never an actor's mailbox thread).
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ashd.errors import Unavailable
from ashd.policy import Clock, SystemClock

log = logging.getLogger(__name__)

MAX_WAIT_S = 900.0  # longest wait in the queue; the caller (ashd/runtime/pending.py) waits as long
SPARE_SLOTS = 1  # starts beyond the slots, each for a tenant with none running or waiting


@dataclass
class Ticket:
    """One start waiting for (or holding) a slot."""

    tenant_id: str
    what: str  # for the operator's log: "session <id>"
    queued_at: float
    spare: bool = False  # it runs in a spare slot (every regular slot was busy)
    admitted: threading.Event = field(default_factory=threading.Event)  # set when it runs, or is refused
    refused: str = ""  # why it never ran (the gate closed while it waited); set before ``admitted``


class StartQueue:
    """Slots and a per-tenant round robin of waiting tickets. Pure; not thread-safe."""

    def __init__(self, slots: int, max_queued: int, spare: int = SPARE_SLOTS) -> None:
        if slots < 1 or max_queued < 0 or spare < 0:
            raise ValueError(f"a start queue needs slots >= 1, max_queued >= 0 and spare >= 0, "
                             f"got {slots}, {max_queued}, {spare}")
        self.slots = slots
        self.max_queued = max_queued
        self.spare = spare
        self.running = 0
        self._running_by: dict[str, int] = {}  # tenant -> its starts running now
        # Tenants with waiting tickets, in the order they are served next (a ring: a served
        # tenant with more waiting goes to the back).
        self._waiting: OrderedDict[str, deque[Ticket]] = OrderedDict()
        self.closed = ""  # why no start runs any more (ashd is stopping); "" while open

    @property
    def queued(self) -> int:
        return sum(len(q) for q in self._waiting.values())

    def offer(self, ticket: Ticket, front: bool = False) -> bool:
        """True: ``ticket`` runs now. False: it waits. Raises Unavailable when the queue is full
        or closed."""
        if self.closed:
            raise Unavailable(self.closed, retry_after_s=5)
        if self.running < self.slots and not self._waiting:
            self._run(ticket.tenant_id)
            return True
        if self._spare_for(ticket.tenant_id):
            ticket.spare = True
            self._run(ticket.tenant_id)
            return True
        refused = self._refusal(ticket.tenant_id)
        if refused:
            raise Unavailable(refused, retry_after_s=self.retry_after_s())
        queue = self._waiting.setdefault(ticket.tenant_id, deque())
        if front:  # a retry waited its turn once: it goes before its tenant's later starts
            queue.appendleft(ticket)
        else:
            queue.append(ticket)
        return False

    def fair_share(self, tenant_id: str) -> int:
        """Queued starts ``tenant_id`` may hold once the queue is full: ``max_queued`` divided
        among the tenants waiting (itself included), at least 1."""
        tenants = len(self._waiting) + (tenant_id not in self._waiting)
        return max(1, self.max_queued // tenants)

    def _refusal(self, tenant_id: str) -> str:
        """Why a new waiting start of ``tenant_id`` is refused, or "" if it may wait.

        Under ``max_queued`` waiting starts, anyone may wait. At the bound, a tenant holding
        less than its fair share still may (one tenant's burst cannot take the whole queue
        from the others), up to twice the bound in all."""
        mine = len(self._waiting.get(tenant_id, ()))
        share = self.fair_share(tenant_id)
        if self.queued < self.max_queued or (mine < share and self.queued < 2 * self.max_queued):
            return ""
        others = len(self._waiting) - (tenant_id in self._waiting)
        if others and mine >= share:
            return (f"this tenant has {mine} agent process starts waiting, its fair share of the start queue "
                    f"(pool.max_queued_starts {self.max_queued} shared by {len(self._waiting)} tenants); "
                    "retry shortly")
        return (f"ashd is starting {self.running} agent processes and {self.queued} more are waiting "
                f"(pool.max_queued_starts {self.max_queued}); retry shortly")

    def release(self, ticket: Ticket) -> Ticket | None:
        """``ticket``'s running start ended: the next ticket to run (it holds the freed slot), if any."""
        self.running -= 1
        left = self._running_by.pop(ticket.tenant_id, 1) - 1
        if left:
            self._running_by[ticket.tenant_id] = left
        return self._admit_next()

    def _spare_for(self, tenant_id: str) -> bool:
        """A tenant with no start running and none waiting may take a spare slot: it does not
        wait for another tenant's burst to free one (issue #18: its first reply in seconds)."""
        return (self._running_by.get(tenant_id, 0) == 0 and tenant_id not in self._waiting
                and self.running < self.slots + self.spare)

    def _run(self, tenant_id: str) -> None:
        self.running += 1
        self._running_by[tenant_id] = self._running_by.get(tenant_id, 0) + 1

    def withdraw(self, ticket: Ticket) -> None:
        """A waiting ticket gives up (its thread stopped waiting). No-op if it is not waiting."""
        queue = self._waiting.get(ticket.tenant_id)
        if queue is not None and ticket in queue:
            queue.remove(ticket)
            if not queue:
                del self._waiting[ticket.tenant_id]

    def withdraw_what(self, tenant_id: str, what: str) -> list[Ticket]:
        """Withdraw ``tenant_id``'s waiting tickets for ``what``; returns them."""
        queue = self._waiting.get(tenant_id)
        found = [ticket for ticket in queue or () if ticket.what == what]
        for ticket in found:
            self.withdraw(ticket)
        return found

    def close(self, reason: str) -> list[Ticket]:
        """No start runs from now on: new offers are refused with ``reason``; returns the
        waiting tickets, withdrawn (their waiters are to be woken and refused)."""
        self.closed = reason
        waiting = [ticket for queue in self._waiting.values() for ticket in queue]
        self._waiting.clear()
        return waiting

    def retry_after_s(self) -> int:
        """A hint for a refused start: about 5 s per start queued ahead of it per slot, 1..60 s."""
        return min(60, max(1, math.ceil(self.queued / self.slots) * 5))

    def _admit_next(self) -> Ticket | None:
        if not self._waiting or self.running >= self.slots:
            return None
        tenant, queue = next(iter(self._waiting.items()))
        ticket = queue.popleft()
        del self._waiting[tenant]
        if queue:
            self._waiting[tenant] = queue  # round robin: this tenant goes to the back of the ring
        self._run(tenant)
        return ticket

    def tenants_in_order(self) -> list[str]:
        """The tenants with waiting starts, next served first (for tests and /health)."""
        return list(self._waiting)


class StartGate:
    """The thread-safe gate every sandbox start passes (one per daemon, shared by sessions)."""

    def __init__(self, slots: int, max_queued: int, clock: Clock | None = None,
                 on_wait: Callable[[Ticket, float], object] | None = None, spare: int = SPARE_SLOTS) -> None:
        """``on_wait(ticket, waited_s)``: called when a queued ticket is admitted (logs, metrics)."""
        self._queue = StartQueue(slots, max_queued, spare)
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._on_wait = on_wait or _log_wait

    def acquire(self, tenant_id: str, what: str, timeout_s: float = MAX_WAIT_S, front: bool = False,
                accepted: Callable[[Ticket, bool], object] = lambda ticket, waits: None) -> Ticket:
        """Take a slot, waiting in the tenant's queue if none is free (blocks the caller).
        Raises Unavailable at once when the queue is full, and when ``timeout_s`` passes
        while still queued. ``accepted(ticket, waits)`` is called once the start runs now
        (False; ``ticket.spare`` if in a spare slot) or waits in the queue (True), before any
        wait; not when refused. ``front``: wait at the front of the tenant's queue (a retried
        start; the round robin across tenants is unchanged). Give the ticket back with :meth:`release`."""
        ticket = Ticket(tenant_id, what, self._clock.monotonic())
        with self._lock:
            runs = self._queue.offer(ticket, front)
        accepted(ticket, not runs)
        if runs:
            return ticket
        with self._lock:
            log.info("%s: its agent process start waits in the start queue (%d running, %d waiting)",
                     what, self._queue.running, self._queue.queued)
        if ticket.admitted.wait(timeout_s):
            with self._lock:
                if ticket.refused:  # the gate closed while it waited
                    raise Unavailable(ticket.refused, retry_after_s=5)
            self._on_wait(ticket, self._clock.monotonic() - ticket.queued_at)
            return ticket
        with self._lock:
            if ticket.refused:
                raise Unavailable(ticket.refused, retry_after_s=5)
            if not ticket.admitted.is_set():
                self._queue.withdraw(ticket)
                raise Unavailable(f"the agent process start waited {timeout_s:.0f}s for a start slot; retry shortly",
                                  retry_after_s=self._queue.retry_after_s())
        return ticket  # admitted just as the wait ended: it holds a slot

    def release(self, ticket: Ticket) -> None:
        """The start holding ``ticket`` is over (ready or failed): the next waiting one runs."""
        with self._lock:
            following = self._queue.release(ticket)
        if following is not None:
            following.admitted.set()

    def cancel(self, tenant_id: str, what: str, reason: str) -> bool:
        """The start of ``what`` is no longer wanted (its session was stopped or ended): if it
        waits in the queue, it leaves it now, refused with ``reason`` (it builds and spawns
        nothing, and gives back what it holds). False if it was not waiting (running, or gone)."""
        with self._lock:
            found = self._queue.withdraw_what(tenant_id, what)
            for ticket in found:
                ticket.refused = reason
        for ticket in found:
            ticket.admitted.set()
        return bool(found)

    def close(self, reason: str = "ashd is stopping; retry shortly") -> None:
        """Shutdown: no queued start runs any more (each waiter is refused with ``reason`` at
        once, before it builds files or spawns anything), nor does any later one. Starts
        already running go on; the pool stops what they started. Idempotent."""
        with self._lock:
            waiting = self._queue.close(reason)
            for ticket in waiting:
                ticket.refused = reason
        for ticket in waiting:
            ticket.admitted.set()
        if waiting:
            log.info("start queue closed (%s): %d waiting starts refused", reason, len(waiting))

    def figures(self) -> dict[str, int]:
        """Starts running and waiting now, and the bounds (for /health)."""
        with self._lock:
            return {"running": self._queue.running, "queued": self._queue.queued,
                    "maxConcurrent": self._queue.slots, "maxQueued": self._queue.max_queued}


def _log_wait(ticket: Ticket, waited_s: float) -> None:
    log.info("%s: its agent process start leaves the start queue after %.1fs", ticket.what, waited_s)
