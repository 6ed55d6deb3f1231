"""SessionSandbox: a session actor's sandbox starts and crashes (see ashd/actors/session_base.py).

Starts run through :class:`~ashd.actors.starts.SessionStarts` (one at a time, off this
thread; restarts after a backoff under the shared ``RestartGovernor``); the callbacks it makes
are here, on the actor's thread, behind :class:`_Owner`. A lost agent process is judged here
too: the next start waits out its backoff, or the session goes to ``error``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ashd.actors import start as starting
from ashd.actors.messages import BridgeExited, Pending, SandboxStarted
from ashd.actors.session_base import SessionBase
from ashd.actors.session_deps import SessionDeps
from ashd.actors.starts import SessionStarts, describe
from ashd.actors.tell import tell
from ashd.actors.timers import Timer
from ashd.errors import AshError, NotFound, Unavailable
from ashd.policy import Escalate, GiveUp
from ashd.states import SandboxState, SessionStatus

log = logging.getLogger(__name__)


class _Owner:
    """The session actor as its starts see it (ashd/actors/starts.py); on the actor's thread."""

    def __init__(self, session: SessionSandbox) -> None:
        self._session = session

    def launch(self, seq: int, began: Callable[[], None], decided: Callable[[str], None],
               retry: bool = False) -> None:
        self._session._launch(seq, began, decided, retry)

    def wake_after(self, delay_s: float, seq: int) -> Timer:
        return self._session._wake_after(delay_s, seq)

    def ready(self, purpose: str, outcome: starting.StartOutcome) -> None:
        self._session._ready(purpose, outcome)

    def failed(self, purpose: str, error: Exception, gave_up: str | None) -> None:
        self._session._start_failed(purpose, error, gave_up)

    def discard(self, outcome: starting.StartOutcome) -> None:
        self._session._discard(outcome)

    def withdraw(self) -> None:
        self._session._withdraw_start()


class SessionSandbox(SessionBase):
    def __init__(self, session_id: str, tenant_id: str, deps: SessionDeps, supervisor: Any = None) -> None:
        super().__init__(session_id, tenant_id, deps, supervisor)
        self._starts = SessionStarts(_Owner(self), session_id, tenant_id, deps.restarts, deps.starts)
        self._cold_source = "fresh"  # where the last start's workspace came from: local|cloud|fresh

    def sandbox_lost(self, fact: BridgeExited) -> None:
        """Told by the pool: the agent process died. Judge it; the next turn starts a new one."""
        if self._held.started is None or fact.sandbox_id != self._held.started.sandbox_id:
            return
        exits = self._deps.exits
        if exits is not None and exits.get(self._held.started.pid) is None:
            return  # about an earlier process of this sandbox id: the current one lives
        self._lose(fact)

    def _ensure_sandbox(self, purpose: str) -> SandboxStarted | Pending:
        """The running sandbox, or Pending while a start runs (one is begun if none does).
        Raises the failure of the start this call is the repeat of."""
        self._check_alive()
        if self._held.started is not None:
            return self._held.started
        return self._starts.ensure(purpose)

    def backoff_over(self, seq: int) -> None:
        """Told by the timer: the backoff before start ``seq``'s next attempt has passed."""
        self._starts.backoff_over(seq)

    def start_ended(self, seq: int, outcome: starting.StartOutcome) -> None:
        """Told by a start thread: attempt ``seq`` is over."""
        self._starts.ended(seq, outcome)

    def _launch(self, seq: int, began: Callable[[], None], decided: Callable[[str], None],
                retry: bool = False) -> None:
        row = self._load()
        agent = self._deps.store.get_agent(self._tenant, row.agent_name)
        if agent is None:
            raise NotFound(f"Agent {row.agent_name} of this session no longer exists")
        me, pool = self._me, self._deps.pool

        def done(outcome: starting.StartOutcome) -> None:  # on the start thread
            if not tell(me.start_ended, seq, outcome, context=f"session {self._id}: its sandbox start ended") \
                    and outcome.started is not None:
                tell(pool.release, outcome.started.sandbox_id, context="freeing a sandbox whose session stopped")

        starting.launch(self._builder, pool, me, row, agent, self._deps.ready_timeout_s, done, self._deps.gate, began,
                        decided, retry)

    def _wake_after(self, delay_s: float, seq: int) -> Timer:
        me = self._me
        return self._timers.call_later(
            delay_s, lambda: tell(me.backoff_over, seq, context=f"session {self._id}: restart after its backoff"))

    def _ready(self, purpose: str, outcome: starting.StartOutcome) -> None:
        assert outcome.started is not None
        self._deps.metrics.sandbox_start.observe(outcome.started.start_ms / 1000)
        tell(self._deps.pool.mark, outcome.started.sandbox_id, SandboxState.WARM,
             context=f"session {self._id}: marking its sandbox warm")
        self._held.take(outcome.started, outcome.sandbox)
        self._cold_source = outcome.source
        if purpose == "warm" and self._supervisor is not None:
            tell(self._supervisor.warmed, self._id, context=f"pre-warm {self._id}: ready to be claimed")
        if purpose == "create" and self._life.status is SessionStatus.STARTING:
            self._transition(SessionStatus.ACTIVE, "sandbox ready")  # STARTING -> ACTIVE

    def _start_failed(self, purpose: str, exc: Exception, gave_up: str | None) -> None:
        if gave_up is not None and not self._draft and self._life.status is not SessionStatus.ERROR:
            self._transition(SessionStatus.ERROR, gave_up)  # STARTING|ACTIVE|PAUSED|STOPPED -> ERROR
        if purpose == "warm":
            log.warning("pre-warm of agent %s failed: %s", self._load().agent_name, exc)
            self.actor_ref.stop(block=False)  # on_stop removes its folder
        elif purpose == "create":
            self._fail_create(exc)
        elif purpose == "first" and gave_up is not None:
            self._discard_folder()  # its create answered while it was queued; nothing ever ran in it

    def _withdraw_start(self) -> None:
        """A stop or end came while this session's start waits in the start queue: it leaves
        the queue at once, and gives back the disk it was promised (``PoolActor.promise_disk``)."""
        if self._deps.gate is not None:
            self._deps.gate.cancel(self._tenant, f"session {self._id}", "the session was stopped before its start ran")

    def _discard(self, outcome: starting.StartOutcome) -> None:
        assert outcome.started is not None
        tell(self._deps.pool.release, outcome.started.sandbox_id,
             context=f"session {self._id}: freeing a sandbox started after a stop")

    def _fail_create(self, exc: Exception) -> None:
        """A create that did not reach ACTIVE leaves nothing on the host (no process, mount,
        cgroup, uid, and no sandbox folder: nothing ran in it). Refused before anything ran
        (Unavailable: capacity, disk; the caller gets 503/507 and retries): like Ash, no
        session row either. Failed: STARTING -> ERROR, with why."""
        try:
            self._held.release()
            if isinstance(exc, Unavailable):
                self._deps.store.delete_session(self._tenant, self._id)
                self._row = None
            elif self._load().status != SessionStatus.ERROR.value:
                reason = exc.message if isinstance(exc, AshError) else f"sandbox start failed: {exc}"
                self._transition(SessionStatus.ERROR, reason)
        except Exception:  # boundary: the caller gets the original failure
            log.exception("session %s: failed create not fully recorded", self._id)
        self._discard_folder()

    def _check_alive(self) -> None:
        """A sandbox whose process already exited is lost now, not when the pool's word
        arrives: a message right after a crash then cold-starts instead of failing."""
        exits, sandbox = self._deps.exits, self._held.started
        if exits is None or sandbox is None:
            return
        fact = exits.get(sandbox.pid)
        if fact is not None and fact.sandbox_id == sandbox.sandbox_id:
            self._lose(fact)

    def _lose(self, fact: BridgeExited) -> None:
        """The agent process is gone: judge the crash; the next start waits out the backoff."""
        assert self._held.started is not None
        tell(self._deps.pool.release, self._held.started.sandbox_id,
             context=f"session {self._id}: freeing a lost sandbox")
        self._held.forget()
        if self._draft:
            self.actor_ref.stop(block=False)
            return
        if fact.expected:  # stopped by ashd (the pool at shutdown), not a crash: nothing to judge
            return
        self._deps.metrics.agent_crashes.inc()
        detail = fact.reason or f"exit code {fact.returncode}"
        decision = self._starts.crashed(detail)
        log.warning("session %s lost its agent process (%s): %s", self._id, detail, describe(decision))
        if isinstance(decision, GiveUp | Escalate) and self._load().status == SessionStatus.ACTIVE.value:
            self._transition(SessionStatus.ERROR, decision.reason)  # ACTIVE -> ERROR
