"""A runner's membership of the cluster: register, heartbeat, re-register, deregister.

Ash's protocol (docs/scale-out.md), with its holes closed:

- **Register** with ``POST /api/internal/runners/register`` at the first coordinator URL that
  answers (the registry is shared in the database, so one is enough). Ash gives up after six
  tries (1, 2, 4, 8, 16 s); a runner here keeps trying with the same doubling, capped at
  :data:`RETRY_CAP_S`, and logs one line per failed attempt.
- **Heartbeat** every ``cluster.heartbeat_interval_s`` with the pool's figures; a coordinator
  that does not answer is skipped for the next URL at once (fail-over). A 404 means the
  registry forgot this runner (it was swept, or registered again elsewhere): register again
  at once, where Ash's runner stays invisible until it restarts.
- **Leave** (SIGTERM): ``deregister`` before the sandboxes stop, so the coordinators pause
  its sessions at once instead of after the liveness timeout.
- **Fence** (ashd's): a runner whose last heartbeat (or registration) a coordinator took was
  *sent* more than the liveness timeout less one heartbeat interval ago may be swept any
  moment, and its sessions resumed on another runner: it stops its linked sandboxes
  (``on_fenced``) without waiting for its links to close (a partition may leave them
  half-open for long), and launches none until a coordinator takes a heartbeat again
  (``on_restored``). Counting from the send keeps the runner's deadline before any
  coordinator's sweep (a coordinator records a heartbeat after it was sent); the interval
  held back covers this check's period and a busy event loop. The timeout is the smaller of
  the runner's own and the one its coordinator answered the registration with
  (``livenessTimeoutS``).

Every request carries ``Authorization: Bearer <ASH_INTERNAL_SECRET>``. Transport and sleep
are injected (tests drive it with fakes). Loop thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ashd.http.queue_worker import retry_delay
from ashd.loop_task import LoopTask

log = logging.getLogger(__name__)

RETRY_BASE_S = 1.0  # Ash's first retry delay
RETRY_CAP_S = 30.0  # Ash stops after 16 s; ashd keeps trying this often at most
LEAVE_TIMEOUT_S = 5.0
FENCE_CHECK_MAX_S = 0.5  # how often the fence deadline is checked at most (a quarter beat if shorter)


@dataclass(frozen=True)
class Identity:
    """What a runner registers as."""

    runner_id: str
    host: str  # the address coordinators reach it at (runner_advertise_host or runner_host)
    port: int
    max_sandboxes: int


@dataclass(frozen=True)
class Figures:
    """A runner's load at one instant: live sandboxes, those still starting, Ash's pool stats."""

    active: int
    warming: int
    stats: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    """A coordinator's answer: its status (0: not reached) and JSON body, or why it failed."""

    status: int
    body: dict[str, Any] | None = None
    error: str = ""

    def why(self) -> str:
        if self.status == 0:
            return self.error or "not reachable"
        message = (self.body or {}).get("error") if isinstance(self.body, dict) else None
        return f"HTTP {self.status}" + (f": {message}" if message else "")


Post = Callable[[str, dict[str, Any]], Awaitable[Answer]]
"""POST a JSON body to a full URL (with the internal secret); never raises."""


class Membership(LoopTask):
    def __init__(self, identity: Identity, urls: Sequence[str], post: Post,
                 figures: Callable[[], Awaitable[Figures]], interval_s: float,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic, fence_after_s: float | None = None,
                 on_fenced: Callable[[str], None] = lambda why: None,
                 on_restored: Callable[[], None] = lambda: None) -> None:
        """``fence_after_s``: the liveness timeout (None: never fence); ``on_fenced(why)`` stops
        the linked sandboxes, ``on_restored`` lets launches in again (loop thread)."""
        if not urls:
            raise ValueError("a runner needs at least one coordinator URL")
        self.identity = identity
        self._urls = [u.rstrip("/") for u in urls]
        self._post = post
        self._figures = figures
        self._interval = interval_s
        self._sleep = sleep
        self._clock = clock
        self._current = 0  # the coordinator that answered last: asked first next time
        self.generation: int | None = None  # the registration held now; None: not registered
        self.last_beat: float | None = None  # clock() of the last heartbeat a coordinator took
        self._fence_after = fence_after_s
        self._on_fenced = on_fenced
        self._on_restored = on_restored
        self._taken_sent: float | None = None  # clock() when the last call a coordinator took was sent
        self.fenced = False  # cut off for longer than the liveness timeout: no sandbox may run
        self._watch: asyncio.Future[None] | None = None

    # -- the loop (start/stop: a child of the root supervisor) ------------------------------

    def start(self) -> None:
        super().start()
        if self._fence_after is not None:
            self._watch = asyncio.ensure_future(self._watch_fence())

    async def stop(self) -> None:
        """Stop beating, then deregister (bounded): the coordinators pause this runner's sessions."""
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
        await super().stop()
        try:
            await asyncio.wait_for(self.leave(), LEAVE_TIMEOUT_S)
        except TimeoutError:
            log.warning("runner %s: no coordinator answered its deregistration within %.0f s; they will "
                        "notice it gone after the liveness timeout", self.identity.runner_id, LEAVE_TIMEOUT_S)

    async def run(self) -> None:
        """Register, then beat until a coordinator forgets this runner; again, forever."""
        while True:
            await self.register()
            while True:
                await self._sleep(self._interval)
                if not await self.heartbeat():
                    break

    # -- the three calls -------------------------------------------------------------------

    async def register(self) -> int:
        """Register with the first coordinator that takes it; retry until one does. The generation."""
        body = {"runnerId": self.identity.runner_id, "host": self.identity.host, "port": self.identity.port,
                "maxSandboxes": self.identity.max_sandboxes}
        attempt = 0
        while True:
            attempt += 1
            delay = retry_delay(attempt - 1, RETRY_BASE_S, RETRY_CAP_S)
            urls = self._rotation()
            for url in urls:
                sent = self._clock()
                answer = await self._post(f"{url}/api/internal/runners/register", body)
                if answer.status == 200:
                    self._taken(sent)
                    return self._registered(url, answer)
                then = f"retrying in {delay:g} s" if url == urls[-1] else "trying the next coordinator"
                log.warning("runner %s: registering with %s failed (%s; attempt %d)%s; %s",
                            self.identity.runner_id, url, answer.why(), attempt, _hint(answer), then)
            await self._sleep(delay)

    async def heartbeat(self) -> bool:
        """One heartbeat, failing over across the coordinators. False: registered no more
        (a coordinator answered 404), register again."""
        figures = await self._figures()
        body = {"runnerId": self.identity.runner_id, "stats": figures.stats, "activeCount": figures.active,
                "generation": self.generation}
        failures = []
        for url in self._rotation():
            sent = self._clock()
            answer = await self._post(f"{url}/api/internal/runners/heartbeat", body)
            if answer.status == 200:
                self._current = self._urls.index(url)
                self.last_beat = self._clock()
                self._taken(sent)
                return True
            if answer.status == 404:
                log.warning("runner %s: %s no longer knows this runner (%s); registering again",
                            self.identity.runner_id, url, answer.why())
                self.generation = None
                return False
            failures.append(f"{url}: {answer.why()}{_hint(answer)}")
        log.warning("runner %s: no coordinator took its heartbeat (%s); next try in %g s",
                    self.identity.runner_id, "; ".join(failures), self._interval)
        return True

    async def leave(self) -> None:
        """Deregister at the first coordinator that answers (no retries: this runner is stopping)."""
        if self.generation is None:
            return
        body = {"runnerId": self.identity.runner_id, "generation": self.generation}
        for url in self._rotation():
            answer = await self._post(f"{url}/api/internal/runners/deregister", body)
            if answer.status == 200:
                paused = (answer.body or {}).get("pausedSessions", 0)
                log.info("runner %s deregistered at %s (%s live session(s) paused there)", self.identity.runner_id,
                         url, paused)
                self.generation = None
                return
            log.warning("runner %s: deregistering at %s failed (%s)", self.identity.runner_id, url, answer.why())

    def status(self) -> dict[str, Any]:
        """For ``GET /runner/health`` (no secrets, no coordinator URL)."""
        age = None if self.last_beat is None else round(self._clock() - self.last_beat, 3)
        return {"registered": self.generation is not None, "generation": self.generation,
                "lastHeartbeatAgeS": age, "fenced": self.fenced}

    # -- fencing ---------------------------------------------------------------------------

    def check_fence(self) -> bool:
        """Fence now if no coordinator took a call sent within the liveness timeout. Whether
        this runner is fenced. Called every :data:`FENCE_CHECK_MAX_S` at most."""
        if self.fenced or self._fence_after is None or self._taken_sent is None:
            return self.fenced
        silent = self._clock() - self._taken_sent
        deadline = self.fence_deadline_s()
        if silent <= deadline:
            return False
        self.fenced = True
        why = (f"no coordinator took a heartbeat sent in the last {deadline:g} s (the liveness timeout "
               f"{self._fence_after:g} s less one heartbeat interval; {silent:.1f} s since the last one taken "
               "was sent)")
        log.warning("runner %s fenced: %s; it may have been swept and its sessions resumed elsewhere, so it stops "
                    "its linked sandboxes and launches none until a coordinator takes a heartbeat again",
                    self.identity.runner_id, why)
        self._on_fenced(why)
        return True

    def fence_deadline_s(self) -> float:
        """Seconds after the send of the last call taken that this runner fences itself."""
        assert self._fence_after is not None
        return max(self._fence_after / 2, self._fence_after - self._interval)

    async def _watch_fence(self) -> None:
        period = min(FENCE_CHECK_MAX_S, self._interval / 4)
        while True:
            await self._sleep(period)
            self.check_fence()

    def _taken(self, sent: float) -> None:
        """A coordinator took a call sent at ``sent``: the fence deadline moves on (and lifts)."""
        self._taken_sent = sent if self._taken_sent is None else max(self._taken_sent, sent)
        if self.fenced:
            self.fenced = False
            log.warning("runner %s: a coordinator took its heartbeat again; fence lifted, launches accepted",
                        self.identity.runner_id)
            self._on_restored()

    # -- internals -------------------------------------------------------------------------

    def _rotation(self) -> list[str]:
        """The URLs, the one that answered last first."""
        return self._urls[self._current:] + self._urls[:self._current]

    def _registered(self, url: str, answer: Answer) -> int:
        generation = (answer.body or {}).get("generation")
        self.generation = generation if isinstance(generation, int) else 1  # Ash's coordinators send none
        told = (answer.body or {}).get("livenessTimeoutS")  # the coordinators' sweep deadline (ashd's)
        if (isinstance(told, (int, float)) and not isinstance(told, bool) and told > 0 and self._fence_after is not None
                and told < self._fence_after):
            log.warning("runner %s: the coordinators' liveness timeout (%g s) is shorter than this runner's (%g s); "
                        "fencing after %g s", self.identity.runner_id, told, self._fence_after, told)
            self._fence_after = float(told)
        self._current = self._urls.index(url)
        self.last_beat = self._clock()
        log.info("runner %s registered with %s as %s:%d (at most %d sandboxes, generation %d)",
                 self.identity.runner_id, url, self.identity.host, self.identity.port, self.identity.max_sandboxes,
                 self.generation)
        return self.generation


def _hint(answer: Answer) -> str:
    if answer.status == 401:
        return " - set the same ASH_INTERNAL_SECRET on every runner and coordinator"
    if answer.status == 409:
        return " - that ashd is not a coordinator (ASH_MODE=coordinator)"
    return ""
