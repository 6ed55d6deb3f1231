"""One attempt to start a session's sandbox, on a thread of its own.

The attempt blocks for as long as the bridge takes to become ready (up to the ready
timeout, 30 s by default), and before that on copying or restoring the session's files: so
it never runs on the session actor's mailbox thread. The thread lives for one attempt; the
session actor learns the :class:`StartOutcome` through ``done`` (which tells it) and decides
what comes next (ready, a restart after a backoff, or a failure).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import pykka

from ashd.actors.messages import SandboxStarted
from ashd.actors.sandbox import SandboxActor
from ashd.actors.spec import SpecBuilder
from ashd.actors.start_gate import StartGate, Ticket
from ashd.actors.tell import tell
from ashd.errors import StartTimedOut, Unavailable
from ashd.store import AgentRow, SessionRow

log = logging.getLogger(__name__)

ASK_TIMEOUT_S = 10.0
# The start gate's word on an attempt: it runs now, in a spare slot beside busy ones (a
# tenant with nothing running, while another's burst holds every slot), waits, or is refused.
RUNS, SPARE, WAITS, REFUSED = "runs", "spare", "waits", "refused"
ROOM_WAIT_S = 15.0  # a session parked to make room snapshots and stops its CLI well within this
ROOM_RETRY_S = 5  # Retry-After when no slot came free in time


@dataclass(frozen=True)
class StartOutcome:
    """A running sandbox (``started`` and its actor), or the ``error`` that stopped the start."""

    started: SandboxStarted | None = None
    sandbox: pykka.ActorProxy[SandboxActor] | None = None
    source: str = "fresh"  # where the workspace came from: local|cloud|fresh
    error: Exception | None = None


def launch(builder: SpecBuilder, pool: Any, owner: Any, row: SessionRow, agent: AgentRow,
           ready_timeout_s: float, done: Callable[[StartOutcome], None], gate: StartGate | None = None,
           began: Callable[[], None] = lambda: None,
           decided: Callable[[str], None] = lambda admission: None, retry: bool = False) -> None:
    """Start the attempt on a new daemon thread; ``done`` is called on it with the outcome.
    ``retry``: a later attempt of the same start (it queues at the front of its tenant's turn).
    ``pool``: the PoolActor's proxy; ``owner``: the session actor's proxy (told of crashes);
    ``gate``: the daemon's start admission (None: no bound); ``decided(admission)`` once the
    gate decided about the attempt (see :func:`admitted`), ``began()`` once admitted."""
    def run() -> None:
        refused = promise_disk(builder, pool, row, agent)
        if refused is not None:
            decided(REFUSED)
            done(refused)
            return
        try:
            done(admitted(gate, row, began, lambda: attempt(builder, pool, owner, row, agent, ready_timeout_s),
                          decided, retry))
        finally:
            tell(pool.forget_disk, row.sandbox_id or row.id, context=f"session {row.id}: its start is over")

    threading.Thread(target=run, name=f"start-{row.id[:8]}", daemon=True).start()


def promise_disk(builder: SpecBuilder, pool: Any, row: SessionRow, agent: AgentRow) -> StartOutcome | None:
    """Admit the workspace image's disk quota before the start queues, so a create that the
    disk cannot hold is refused by its own answer (507), never after it answered 201 from the
    queue (issue #18). None: admitted (held until ``forget_disk``); else the refusal."""
    try:
        disk_mb = builder.disk_mb(row, agent)
        pool.promise_disk(row.sandbox_id or row.id, builder.root(row), disk_mb).get(timeout=ASK_TIMEOUT_S)
    except (pykka.Timeout, pykka.ActorDeadError):
        return StartOutcome(error=Unavailable("the sandbox pool did not answer; retry shortly", retry_after_s=5))
    except Exception as exc:  # boundary: disk admission, a bad limits config (the outcome carries it)
        return StartOutcome(error=exc)
    return None


def admitted(gate: StartGate | None, row: SessionRow, began: Callable[[], None],
             run: Callable[[], StartOutcome], decided: Callable[[str], None] = lambda admission: None,
             retry: bool = False) -> StartOutcome:
    """``run()`` while holding a slot of ``gate`` (queued first if none is free): from before
    the files are built until the bridge is ready or the attempt failed, so the readiness
    timeout counts from when the start begins, not from when it queued. A full queue is the
    outcome's Unavailable (503 with Retry-After), at once. ``decided(admission)`` as soon as
    the gate decided: ``runs`` (now), ``spare`` (now, beside a burst), ``waits`` (queued)
    or ``refused``."""
    if gate is None:
        decided(RUNS)
        began()
        return run()
    try:
        ticket = gate.acquire(row.tenant_id, f"session {row.id}", front=retry,
                              accepted=lambda ticket, waits: decided(_word(ticket, waits)))
    except Unavailable as exc:
        decided(REFUSED)
        return StartOutcome(error=exc)
    try:
        began()
        return run()
    finally:
        gate.release(ticket)


def _word(ticket: Ticket, waits: bool) -> str:
    return WAITS if waits else SPARE if ticket.spare else RUNS


def attempt(builder: SpecBuilder, pool: Any, owner: Any, row: SessionRow, agent: AgentRow,
            ready_timeout_s: float) -> StartOutcome:
    """Files, spec, a pool slot, the bridge's ready handshake. Blocking; never raises."""
    try:
        built = builder.build(row, agent)
    except Exception as exc:  # boundary: the outcome carries it to the session actor
        return StartOutcome(error=exc)
    try:
        sandbox = pool.reserve(built.spec, owner).get(timeout=ASK_TIMEOUT_S)
        room: Future[None] = pool.room(built.spec.sandbox_id).get(timeout=ASK_TIMEOUT_S)
    except (pykka.Timeout, pykka.ActorDeadError):
        return StartOutcome(error=Unavailable("the sandbox pool did not answer; retry shortly", retry_after_s=5))
    except Exception as exc:  # boundary: capacity, disk admission
        return StartOutcome(error=exc)
    if not _wait_for_room(room):
        tell(pool.release, built.spec.sandbox_id, context=f"session {row.id}: withdrawing its reservation")
        return StartOutcome(error=Unavailable(
            f"every warm session stayed busy for {ROOM_WAIT_S:.0f}s (pool.max_warm_sessions); retry shortly",
            retry_after_s=ROOM_RETRY_S))
    try:
        started: SandboxStarted = sandbox.start_bridge().get(timeout=ready_timeout_s + ASK_TIMEOUT_S)
    except Exception as exc:  # boundary: the slot is given back whatever stopped the start
        tell(pool.release, built.spec.sandbox_id, context=f"session {row.id}: freeing the slot of a failed start")
        if isinstance(exc, pykka.Timeout):
            return StartOutcome(error=StartTimedOut("agent process start timed out"))
        return StartOutcome(error=exc)
    return StartOutcome(started, sandbox, built.source)


def _wait_for_room(room: Future[None]) -> bool:
    """At the warm cap, wait until this start holds a slot (a session parked for it is gone):
    never more CLIs than the cap. False if none came free within ``ROOM_WAIT_S``."""
    try:
        room.result(timeout=ROOM_WAIT_S)
    except FutureTimeout:
        return False
    return True
