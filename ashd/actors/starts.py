"""A session's sandbox starts: one at a time, retried after backoffs, judged by the restart policy.

Lives inside a session actor and runs only on its thread (not thread-safe; never blocks):
the attempts themselves run elsewhere (:mod:`ashd.actors.start`), the backoffs on the shared
timer thread; both report back through the actor, which calls :meth:`SessionStarts.ended`
and :meth:`SessionStarts.backoff_over`. While a start is in progress (an attempt runs or a
backoff waits) every caller gets the same :class:`Pending`; once it is over, the next
repeated call gets the sandbox, or the start's failure (raised once, if still recent).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol

from ashd.actors.messages import Pending
from ashd.actors.restarts import RestartGovernor
from ashd.actors.snapshot_worker import resolve
from ashd.actors.start import REFUSED, StartOutcome
from ashd.actors.timers import Timer
from ashd.actors.vitals import StartRecord
from ashd.errors import SandboxFailed, StartTimedOut, Unavailable
from ashd.policy import ChildHistory, Decision, Escalate, GiveUp, Restart

log = logging.getLogger(__name__)

FAILURE_KEPT_S = 60.0  # how long a finished start's failure waits for the repeated call that reports it


class StartOwner(Protocol):
    """What a start needs from its session actor (called on the actor's thread)."""

    def launch(self, seq: int, began: Callable[[], None], decided: Callable[[str], None],
               retry: bool = False) -> None:
        """Begin attempt ``seq`` off this thread (its outcome comes back to :meth:`SessionStarts.ended`);
        ``retry``: not the start's first attempt (it keeps its place at the front of its
        tenant's start queue: it waited its turn once already);
        the attempt calls ``decided(admission)`` once the start queue decided (``runs``,
        ``spare``, ``waits`` or ``refused``: :func:`ashd.actors.start.admitted`), and ``began()`` once
        it has left the start queue (any thread). Raises if it cannot begin (the agent is
        gone): the start fails with that."""
        ...

    def wake_after(self, delay_s: float, seq: int) -> Timer:
        """Call :meth:`SessionStarts.backoff_over` with ``seq`` after ``delay_s`` (through the actor)."""
        ...

    def ready(self, purpose: str, outcome: StartOutcome) -> None:
        """The sandbox runs: take it."""
        ...

    def failed(self, purpose: str, error: Exception, gave_up: str | None) -> None:
        """The start failed for good; ``gave_up``: the policy's reason when it stopped retrying."""
        ...

    def discard(self, outcome: StartOutcome) -> None:
        """A sandbox that started after its start was cancelled: free it."""
        ...

    def withdraw(self) -> None:
        """The start was cancelled while its attempt runs: if the attempt still waits in the
        start queue, it leaves it now (refused: its outcome comes back as any other)."""
        ...


@dataclass
class _Start:
    seq: int
    purpose: str  # create | warm | run | first (a create that answered before its start was over)
    until: Future[None] = field(default_factory=Future)  # resolved when the start is over
    begun: Future[None] = field(default_factory=Future)  # resolved when an attempt left the start queue
    decided: Future[None] = field(default_factory=Future)  # resolved when the start queue decided about it
    admission: str = REFUSED  # its word, set before ``decided`` resolves: runs | waits | refused
    # Resolved when an attempt was only slow (its readiness deadline passed under load) and
    # another follows, or when the start is over.
    slowed: Future[None] = field(default_factory=Future)
    timer: Timer | None = None  # the next attempt, while a backoff runs
    running: bool = False  # an attempt is on its start thread
    attempts: int = 0  # attempts begun so far
    cancelled: bool = False  # a stop or end came: no further attempt; a sandbox that starts anyway goes


class SessionStarts:
    def __init__(self, owner: StartOwner, session_id: str, tenant_id: str, restarts: RestartGovernor,
                 record: StartRecord) -> None:
        self._session = owner
        self._id = session_id
        self._tenant = tenant_id
        self._restarts = restarts
        self._record = record
        self.history = ChildHistory()  # this session's agent process: starts and exits
        self._not_before = 0.0  # no attempt before this (a restart backoff)
        self._start: _Start | None = None
        self._seq = 0
        self._failure: tuple[Exception, float] | None = None

    @property
    def in_progress(self) -> bool:
        return self._start is not None

    @property
    def has_failure(self) -> bool:
        return self._failure is not None

    @property
    def purpose(self) -> str | None:
        """The purpose of the start in progress, if any."""
        return self._start.purpose if self._start is not None else None

    def admission(self) -> tuple[Future[None], str, Future[None]] | None:
        """For the start in progress: a future resolved once the start queue decided about
        its first attempt, (once resolved) its word: ``runs``, ``waits`` or ``refused``, and
        a future resolved once an attempt was only slow and is retried (or the start is over)."""
        start = self._start
        return (start.decided, start.admission, start.slowed) if start is not None else None

    def detach_create(self) -> None:
        """The create answered before its start was over: the start goes on as the start of
        the session's first message (its failure no longer fails the create)."""
        if self._start is not None and self._start.purpose == "create":
            self._start.purpose = "first"

    def pending(self) -> Pending | None:
        """The Pending of the start in progress, if any."""
        return Pending(self._start.until, self._start.begun) if self._start is not None else None

    def ensure(self, purpose: str) -> Pending:
        """Pending for the start in progress (one is begun if none is). Raises the failure of
        the start the current call repeats."""
        self.raise_failure()
        start = self._start
        if start is None:
            self._seq += 1
            start = self._start = _Start(self._seq, purpose)
            self._schedule(start)
            self.raise_failure()  # it failed at once (e.g. the agent is gone)
        return Pending(start.until, start.begun)

    def raise_failure(self) -> None:
        if self._failure is None:
            return
        failure, at = self._failure
        self._failure = None
        if self._restarts.now() - at <= FAILURE_KEPT_S:
            raise failure

    def afresh(self) -> None:
        """An operator resumed an ``error`` session: forget the crashes, no backoff."""
        self.history, self._not_before = ChildHistory(), 0.0

    def cancel(self) -> Pending | None:
        """Cancel for a stop or end: over at once during a backoff; Pending while an attempt runs."""
        start = self._start
        if start is None:
            return None
        start.cancelled = True
        if start.running:
            self._session.withdraw()  # a queued attempt ends now, not when its turn in the queue comes
            return Pending(start.until, start.begun)
        if start.timer is not None:
            start.timer.cancel()
        self._finish(start)
        return None

    def close(self) -> None:
        """The actor stops: no more attempts; waiters wake (and find the actor gone)."""
        if self._start is not None:
            self._start.cancelled = True
            if self._start.timer is not None:
                self._start.timer.cancel()
            self._finish(self._start)

    def crashed(self, detail: str) -> Decision:
        """A started agent process died: judge it; a restart waits out its backoff."""
        self.history = self.history.record_exit(self._restarts.now(), True, detail)
        decision = self._restarts.decide(self.history, self._tenant)
        if isinstance(decision, Restart):
            self._not_before = self._restarts.now() + decision.delay_s
        return decision

    def backoff_over(self, seq: int) -> None:
        start = self._start
        if start is None or start.seq != seq or start.cancelled:
            return
        start.timer = None
        self._attempt(start)

    def ended(self, seq: int, outcome: StartOutcome) -> None:
        """Attempt ``seq`` is over."""
        start = self._start
        if start is None or start.seq != seq or start.cancelled:
            if outcome.started is not None:  # nobody wants it any more (a stop or end came)
                self._session.discard(outcome)
            if start is not None and start.seq == seq:
                self._finish(start)
            return
        start.running = False
        if outcome.error is not None:
            self._attempt_failed(start, outcome.error)
            return
        assert outcome.started is not None
        self.history = self.history.record_start(self._restarts.now())
        self._record.started()
        self._session.ready(start.purpose, outcome)
        self._finish(start)

    def _schedule(self, start: _Start) -> None:
        wait = self._not_before - self._restarts.now()
        if wait > 0:
            start.timer = self._session.wake_after(wait, start.seq)
        else:
            self._attempt(start)

    def _attempt(self, start: _Start) -> None:
        try:
            self._session.launch(start.seq, lambda: resolve(start.begun), lambda admission: _decided(start, admission),
                                 retry=start.attempts > 0)
        except Exception as exc:  # boundary: the start's outcome, for whoever waits on it
            self._fail(start, exc, None)
            return
        start.running = True
        start.attempts += 1

    def _attempt_failed(self, start: _Start, exc: Exception) -> None:
        """Another attempt after a backoff, or the start's failure."""
        if not isinstance(exc, SandboxFailed):  # capacity, disk, a missing agent: not the process's fault
            self._fail(start, exc, None)
            return
        self._record.failed(self._tenant, self._id, exc.message)
        self.history = self.history.record_exit(self._restarts.now(), True, exc.message)
        # Slow under load is not a crash: judged by this session's intensity, never charged to a budget.
        decision = self._restarts.decide(self.history, self._tenant, charge=not isinstance(exc, StartTimedOut))
        log.warning("session %s: agent process failed to start (%s): %s", self._id, exc.message.split("\n", 1)[0],
                    describe(decision))
        if isinstance(decision, Restart) and not start.cancelled:
            self._not_before = self._restarts.now() + decision.delay_s
            self._schedule(start)
            if isinstance(exc, StartTimedOut):
                resolve(start.slowed)  # a create need not wait for the retry (ashd/actors/session.py)
            return
        reason = decision.reason if isinstance(decision, GiveUp | Escalate) else exc.message
        failure: Exception = (Unavailable(f"ashd is pausing this tenant's agent process restarts: {reason}", 30)
                              if isinstance(decision, Escalate) else SandboxFailed(reason))
        self._fail(start, failure, None if start.cancelled else reason)

    def _fail(self, start: _Start, exc: Exception, gave_up: str | None) -> None:
        if not start.cancelled:
            self._session.failed(start.purpose, exc, gave_up)
            if start.purpose != "warm":  # nobody repeats a pre-warm
                self._failure = (exc, self._restarts.now())
        self._finish(start)

    def _finish(self, start: _Start) -> None:
        if self._start is start:
            self._start = None
        _decided(start, REFUSED)  # over before the start queue took it (cancelled, failed at once)
        resolve(start.begun)  # a start over before it began (refused, cancelled) frees its waiters too
        resolve(start.slowed)
        resolve(start.until)


def _decided(start: _Start, admission: str) -> None:
    """The start queue's first word on ``start`` (any thread; later words are ignored)."""
    if not start.decided.done():
        start.admission = admission
        resolve(start.decided)


def describe(decision: object) -> str:
    if isinstance(decision, Restart):
        return f"restarting in {decision.delay_s:.1f}s (attempt {decision.attempt}/{decision.of})"
    if isinstance(decision, GiveUp | Escalate):
        return f"giving up: {decision.reason}"
    return "not restarting"
