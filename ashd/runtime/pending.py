"""Asks that may answer :class:`~ashd.actors.messages.Pending` (loop thread only).

A session actor does not block its mailbox on a sandbox start: a call that needs one may
answer ``Pending(until)``, where ``until`` resolves when the start is over (successfully or
not). The caller then repeats the same call, which now answers (or raises what the start
raised). :func:`answered` does that, all within one deadline, so every caller of a call that
can start a sandbox or wait for a snapshot (create, claim, begin_turn, resume, configure, pause,
stop, end, fork) handles it the same way, also when the actor answers at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ashd.actors.messages import Pending
from ashd.actors.start_gate import MAX_WAIT_S as QUEUE_WAIT_CAP_S
from ashd.errors import Unavailable

T = TypeVar("T")

MIN_ASK_S = 1.0  # the last repeat still gets this long, even when the deadline is nearly spent


async def answered(ask: Callable[[float], Awaitable[T | Pending]], timeout: float) -> T:
    """``ask(seconds)`` until it answers something other than Pending, waiting for each
    Pending's ``until`` in between; everything within ``timeout`` seconds.

    Time a sandbox start spends in the start queue (``Pending.begun`` not yet resolved) is
    not charged, and once it began a sandbox start (a Pending with ``begun``) is waited for
    up to ``QUEUE_WAIT_CAP_S``: a start bounds itself, and a retry of a start that was slow
    under load queues again. So a message behind a burst waits its turn instead of failing.
    Raises what ``ask`` raises, and Unavailable when the deadline passes while pending.
    """
    loop = asyncio.get_running_loop()
    began = loop.time()
    deadline = began + timeout
    while True:
        reply = await ask(max(deadline - loop.time(), MIN_ASK_S))
        if not isinstance(reply, Pending):
            return reply
        until = asyncio.wrap_future(reply.until)
        if reply.begun is not None:
            if not reply.begun.done():
                await _queued(asyncio.wrap_future(reply.begun), until)
            # A sandbox start bounds itself (each attempt by the readiness timeout and the queue's
            # cap, the attempts by the restart policy); a retry after a slow attempt queues again,
            # so its caller waits for the whole start, up to the queue's cap from when it began.
            deadline = max(deadline, loop.time() + max(timeout, QUEUE_WAIT_CAP_S))
        done, _ = await asyncio.wait({until}, timeout=max(deadline - loop.time(), 0.0))
        if not done:
            until.add_done_callback(_consume)
            raise Unavailable(f"the session's sandbox did not start within {loop.time() - began:.0f}s; retry shortly")
        _consume(until)


async def _queued(begun: asyncio.Future[None], until: asyncio.Future[None]) -> None:
    """Wait while the start is in the start queue (bounded by the queue itself: every start
    ahead of it is bounded by the readiness timeout; ``QUEUE_WAIT_CAP_S`` guards the rest)."""
    done, _ = await asyncio.wait({begun, until}, timeout=QUEUE_WAIT_CAP_S, return_when=asyncio.FIRST_COMPLETED)
    if begun not in done:
        begun.add_done_callback(_consume)
    if not done:
        until.add_done_callback(_consume)
        raise Unavailable(f"the session's sandbox start waited {QUEUE_WAIT_CAP_S:.0f}s in the start queue; "
                          "retry shortly", retry_after_s=30)


def _consume(until: asyncio.Future[None]) -> None:
    """How the work behind a Pending ended is the repeated call's to tell, not ours."""
    if not until.cancelled():
        until.exception()
