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
from ashd.errors import Unavailable

T = TypeVar("T")

MIN_ASK_S = 1.0  # the last repeat still gets this long, even when the deadline is nearly spent


async def answered(ask: Callable[[float], Awaitable[T | Pending]], timeout: float) -> T:
    """``ask(seconds)`` until it answers something other than Pending, waiting for each
    Pending's ``until`` in between; everything within ``timeout`` seconds.

    Raises what ``ask`` raises, and Unavailable when the deadline passes while pending.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        reply = await ask(max(deadline - loop.time(), MIN_ASK_S))
        if not isinstance(reply, Pending):
            return reply
        until = asyncio.wrap_future(reply.until)
        done, _ = await asyncio.wait({until}, timeout=max(deadline - loop.time(), 0.0))
        if not done:
            until.add_done_callback(_consume)
            raise Unavailable(f"the session's sandbox did not start within {timeout:.0f}s; retry shortly")
        _consume(until)


def _consume(until: asyncio.Future[None]) -> None:
    """How the work behind a Pending ended is the repeated call's to tell, not ours."""
    if not until.cancelled():
        until.exception()
