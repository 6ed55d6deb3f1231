"""Which coordinator serves a session's turns: its lease, asked for and handed over (loop thread).

Coordinators on one Postgres each run a :class:`SessionOwnership` over their
:class:`~ashd.store.leases.SessionLeases`. Before anything that needs the session's sandbox
(a message, a resume, a pause, a stop...), the runtime :meth:`claims <SessionOwnership.claim>`
the session:

- held here already: nothing to do (read from memory: no round trip, no thread hop);
- free (nobody holds it, e.g. its owner died: Postgres freed the lock): taken at once; the
  next start launches with the new generation (cold, since a dead owner's sandboxes were
  stopped by their runner when its link closed);
- held by another coordinator: ask it to release (NOTIFY) and wait for its answer. An idle
  owner hands its sandbox over (``hand_over``: detached on the runner, kept alive for the
  adopter) and answers ``released``; the claim takes the lease, and the launch that follows
  adopts the live sandbox. An owner with a turn running (or starting one) answers ``busy``:
  the claim raises the same Conflict (409) as a second message to a busy session on one
  daemon. No answer (an owner alive in Postgres but not answering) within
  :data:`ANSWER_WAIT_S`: Unavailable (503), retry.

:meth:`SessionOwnership.asked` is the owner's side, :meth:`SessionOwnership.lost` the fencing:
the lease connection failed, so every session it held is no longer ours; the runtime kills
their agent processes (running turns end with ``error`` + ``done``).

On SQLite (one daemon) there is no ownership object: the runtime skips all of this.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from ashd.errors import Conflict, Unavailable
from ashd.runtime.offload import Offload
from ashd.store.errors import StoreUnavailable
from ashd.store.leases import SessionLeases

log = logging.getLogger(__name__)

ANSWER_WAIT_S = 10.0  # how long a claim waits for the holder to answer before it gives up (503)
RETRY_LOCK_S = 0.5  # meanwhile the lock is tried again this often (a release that was not answered)
UP_WAIT_S = 5.0  # a claim while the lease connection is (re)connecting waits this long
RELEASED, BUSY = "released", "busy"
TURN_RUNNING = "A turn is already running in this session; wait for its done event"

HandOver = Callable[[str], Awaitable[bool]]  # session id -> False if busy; else its sandbox and lease given up
Fence = Callable[[str], Awaitable[None]]  # session id: the lease is lost; end its sandbox here


class SessionOwnership:
    def __init__(self, leases: SessionLeases, offload: Offload, loop: asyncio.AbstractEventLoop,
                 answered: Callable[[str], object] = lambda answer: None) -> None:
        """``answered(answer)``: told each answer this coordinator gives a request for a session
        it holds (``released`` or ``busy``; the metrics' counter)."""
        self._leases = leases
        self._count = answered
        self._offload = offload
        self._loop = loop
        self._answers: dict[str, asyncio.Future[str]] = {}  # request id -> its answer
        self._hand_over: HandOver | None = None
        self._fence: Fence | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.handovers = 0  # sessions this coordinator handed over since start

    def bind(self, hand_over: HandOver, fence: Fence) -> None:
        """The runtime's side: give a session's sandbox up; end a session whose lease is lost."""
        self._hand_over, self._fence = hand_over, fence

    @property
    def leases(self) -> SessionLeases:
        return self._leases

    # -- a loop service (ashd/listener.py) ----------------------------------------------

    def start(self) -> None:
        self._leases.start()

    async def stop(self) -> None:
        await self._loop.run_in_executor(None, self._leases.stop)

    # -- claiming (loop thread) -----------------------------------------------------------

    async def claim(self, session_id: str) -> bool:
        """Hold the session's lease here; True if it was just taken (another coordinator may
        have owned the session since: its cached state here is stale). Raises Conflict (a turn
        runs elsewhere), Unavailable (the holder did not answer; the lease connection is down)."""
        if self._leases.up and self._leases.generation(session_id) is not None:
            return False  # held here: the common case costs no thread hop
        await self._until_up()
        deadline = time.monotonic() + ANSWER_WAIT_S
        request: str | None = None
        try:
            while True:
                held = await self._offload.read(self._leases.hold, session_id)
                if held is not None:
                    return held[1]
                if request is None:
                    request = uuid.uuid4().hex
                    self._answers[request] = self._loop.create_future()
                    await self._offload.read(self._leases.ask, session_id, request)
                answer = await self._answer(request, deadline, session_id)
                if answer == BUSY:
                    raise Conflict(TURN_RUNNING)
                if answer == RELEASED:
                    self._answers.pop(request, None)
                    request = None  # a third coordinator may have been quicker: ask again if so
        finally:
            if request is not None:
                self._answers.pop(request, None)

    async def _answer(self, request: str, deadline: float, session_id: str) -> str | None:
        """The holder's answer, or None after :data:`RETRY_LOCK_S` (try the lock again)."""
        left = deadline - time.monotonic()
        if left <= 0:
            holder = await self._offload.read(self._leases.holder, session_id)
            raise Unavailable(f"Session is held by coordinator {holder or '(unknown)'}, which did not hand it over "
                              f"within {ANSWER_WAIT_S:.0f}s; retry shortly", retry_after_s=2)
        try:
            return await asyncio.wait_for(asyncio.shield(self._answers[request]), min(RETRY_LOCK_S, left))
        except TimeoutError:
            return None

    async def _until_up(self) -> None:
        deadline = time.monotonic() + UP_WAIT_S
        while not self._leases.up:
            if time.monotonic() >= deadline:
                raise StoreUnavailable("this coordinator's lease connection to the database is down; retry shortly")
            await asyncio.sleep(0.05)

    async def release(self, session_id: str) -> None:
        """Give the lease up (nothing of the session is live here any more)."""
        try:
            await self._offload.read(self._leases.release, session_id)
        except StoreUnavailable as exc:  # the connection is down: the lock went with it
            log.info("session %s: lease not released: %s", session_id, exc)

    # -- the lease thread's callbacks (any thread -> loop) --------------------------------

    def asked(self, session_id: str, request_id: str) -> None:
        """Another coordinator asks for a session held here (lease thread)."""
        self._loop.call_soon_threadsafe(self._spawn, self._answer_request(session_id, request_id))

    def answered(self, request_id: str, answer: str) -> None:
        """A holder answered a request (every coordinator hears every answer; lease thread)."""
        def resolve() -> None:
            waiting = self._answers.get(request_id)
            if waiting is not None and not waiting.done():
                waiting.set_result(answer)
        self._loop.call_soon_threadsafe(resolve)

    def lost(self, sessions: dict[str, int]) -> None:
        """The lease connection failed: none of these sessions is ours any more (lease thread)."""
        def fence() -> None:
            for session_id in sessions:
                self._spawn(self._fenced(session_id))
        self._loop.call_soon_threadsafe(fence)

    async def _fenced(self, session_id: str) -> None:
        try:
            if self._fence is not None:
                await self._fence(session_id)
        except Exception:  # boundary: one session's failure must not stop the others' fencing
            log.exception("session %s: not fenced after its lease was lost", session_id)

    async def _answer_request(self, session_id: str, request_id: str) -> None:
        began = time.monotonic()
        answer = BUSY
        try:
            if self._hand_over is not None and await self._hand_over(session_id):
                answer = RELEASED
                self.handovers += 1
        except Exception:  # boundary: the asker must hear something
            log.exception("session %s: handing it over failed", session_id)
        self._count(answer)
        try:
            await self._offload.read(self._leases.answer, request_id, answer)
        except StoreUnavailable as exc:
            log.warning("session %s: the handover answer was not sent: %s", session_id, exc)
        log.info("session %s: another coordinator asked for it: %s (%.0f ms)", session_id, answer,
                 (time.monotonic() - began) * 1000)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
