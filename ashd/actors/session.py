"""SessionActor: one live session, a thin shell over the parts that do the work.

Its messages are grouped by concern in a chain of classes, one module each (see
:mod:`ashd.actors.session_base`): its sandbox's starts and crashes (``SessionSandbox``), its
turns (``SessionTurns``), letting its sandbox go (``SessionMoves``). This module holds its
hooks, its lifecycle requests (create, claim, pause, resume, stop, end, configure, fork) and
its idle timeout. The parts that do the work:

- its status and turn gate: :class:`~ashd.lifecycle.SessionLifecycle` (every status change
  goes through ``SessionBase._transition``, which validates, persists, logs and counts);
- its sandbox's files and spec: :class:`~ashd.actors.spec.SpecBuilder`, run by a start
  attempt on its own thread (:mod:`ashd.actors.start`);
- its starts and crash judgement: :class:`~ashd.actors.starts.SessionStarts` (one start at a
  time, restarts after a backoff under the shared ``RestartGovernor``, give up -> ``error``
  with a reason, or escalate);
- its live sandbox, its release, its folder and its snapshots (on the shared
  :class:`~ashd.actors.snapshot_worker.SnapshotWorker`): :class:`~ashd.actors.held_sandbox.HeldSandbox`;
- waiting (restart backoffs, the idle timeout): the shared :class:`~ashd.actors.timers.Timers`.

Threads: every method runs on this actor's pykka thread and returns quickly; nothing sleeps
or waits for a bridge or an archive here. Work that takes time answers
:class:`~ashd.actors.messages.Pending`; the caller awaits ``until`` and repeats the call.
These methods may answer Pending: ``create``, ``claim``, ``begin_turn``, ``resume``,
``configure`` (while this session's sandbox start runs or waits out a backoff), and
``pause``, ``stop_session``, ``end_session``, ``fork`` (until the workspace snapshot they
need is complete; ``stop_session``/``end_session`` also while a start attempt runs).
Bounded waits left on this thread: stopping a bridge (TERM, grace, KILL, cleanup: at most
``stop_timeout_s``), the sandbox folder's teardown before it is removed (the same bound),
store reads and writes, and a fork's snapshot copy.

Bounded threads: an actor with no sandbox, no turn and no start for ``idle_s`` asks its
supervisor to stop it; the next request starts a new one that loads the session from the store.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any

from ashd.actors import start as starting
from ashd.actors.faults import crash_detail
from ashd.actors.messages import Pending, SessionView
from ashd.actors.session_deps import SessionDeps
from ashd.actors.session_moves import SessionMoves
from ashd.actors.session_turns import SessionTurns
from ashd.actors.tell import tell
from ashd.actors.timers import Timer
from ashd.errors import Conflict
from ashd.options import SessionOptions
from ashd.states import SessionStatus
from ashd.store import AgentRow, SessionRow, utc_now

log = logging.getLogger(__name__)

# Why a create answered before its agent process was up, by the start queue's word.
_EARLY = {starting.WAITS: "its start is queued",
          starting.SPARE: "its start runs beside another tenant's burst (a spare start slot)"}


class SessionActor(SessionTurns, SessionMoves):
    def __init__(self, session_id: str, tenant_id: str, deps: SessionDeps, supervisor: Any = None) -> None:
        """``supervisor``: the SessionSupervisor's proxy, told when this actor is idle."""
        super().__init__(session_id, tenant_id, deps, supervisor)
        self._resume_path: str | None = None  # warm|cold while a resume waits for its start
        self._idle_timer: Timer | None = None

    # -- actor hooks -----------------------------------------------------------

    def on_start(self) -> None:
        self._arm_idle(self._deps.idle_s)
        if self._deps.turn_gates is not None:
            self._deps.turn_gates.put(self._id, self._gate)

    def on_stop(self) -> None:
        """Cancels timers; a start still running releases its sandbox when it sees this actor
        gone; an unclaimed pre-warm leaves nothing behind (its folder has no session's files)."""
        self._forget_gate()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self._starts.close()
        if self._draft:
            self._drop_draft()

    def on_failure(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                   tb: TracebackType | None) -> None:
        """Crashed (an exception in a told message): cancel what is scheduled, give the sandbox
        back at once, so no bridge outlives its owner, then tell the supervisor (the next
        request gets a new actor). pykka runs no ``on_stop`` after a failure."""
        try:
            self._forget_gate()
            if self._idle_timer is not None:
                self._idle_timer.cancel()
            self._starts.close()
            self._held.release(grace_s=0.0)
        except Exception:  # boundary: the supervisor must hear of the crash all the same
            log.exception("session %s: sandbox not released after a crash", self._id)
        finally:
            if self._deps.crashed is not None:
                self._deps.crashed(self._id, self._tenant, crash_detail(exc))

    # -- lifecycle -------------------------------------------------------------

    def warm_up(self, agent: AgentRow) -> None:
        """Pre-warm: start a sandbox for ``agent`` before any session exists (no row yet).

        The sandbox is built from the agent alone (tenant, folder, agent env): nothing of a
        session. The start runs off this thread; a failed one stops this actor (logged).
        """
        now = utc_now()
        self._set_row(SessionRow(self._id, self._tenant, agent.name, self._id, SessionStatus.STARTING.value,
                                 None, None, None, SessionOptions().to_json(), now, now))
        self._draft = True
        self._ensure_sandbox("warm")

    @property
    def warm(self) -> bool:
        return self._draft and self._held.started is not None

    def claim(self, agent: AgentRow) -> SessionRow | Pending:
        """Turn this pre-warmed actor into a real session of ``agent`` (default options): its
        row is inserted already ``active`` (one commit). Conflict if its sandbox is gone."""
        if not self._draft:
            raise Conflict("this pre-warmed sandbox is no longer available")
        pending = self._starts.pending()
        if pending is not None:
            return pending
        self._check_alive()
        if self._held.started is None:
            raise Conflict("this pre-warmed sandbox is no longer available")
        self._draft = False

        def insert(status: str, status_reason: str | None) -> SessionRow:
            return self._deps.store.create_session(
                tenant_id=self._tenant, session_id=self._id, agent_name=agent.name, status=status,
                sandbox_id=self._id, config=SessionOptions().to_json(), status_reason=status_reason)

        # STARTING -> ACTIVE
        return self._transition(SessionStatus.ACTIVE, "claimed a pre-warmed sandbox", persist=insert)

    def create(self, agent: AgentRow, options: SessionOptions) -> SessionRow | Pending:
        """Insert the session, start its sandbox, and make it active (Pending until then);
        but when the start has to wait in the start queue (a burst), ``active`` as soon as it
        is queued, and when its first attempt was only slow, ``active`` when it is retried: its
        first message waits for the agent process (``begin_turn``), as Ash's first message
        waits for its agent, so no create waits for a burst's starts.

        Raises Unavailable when the start queue refuses the start, at capacity or when disk
        admission refuses it (no row is kept), and SandboxFailed if the agent process cannot
        start after the restart policy's retries (the session is then ``error``), for a start
        that ended before the create answered; a queued one's failure is its first message's.
        """
        if not self._starts.has_failure:
            if self._row is None:  # the first call: later ones repeat it
                self._set_row(self._deps.store.create_session(
                    tenant_id=self._tenant, session_id=self._id, agent_name=agent.name,
                    status=SessionStatus.STARTING.value, sandbox_id=self._id,
                    model=options.model, config=options.to_json(),
                ))
            elif self._life.status is not SessionStatus.STARTING and not self._starts.in_progress:
                return self._load()  # the start is over (or a stop ended it)
        started = self._ensure_sandbox("create")
        if not isinstance(started, Pending):
            return self._load()
        return self._answer_queued(started)

    def _answer_queued(self, started: Pending) -> SessionRow | Pending:
        """A create's answer while its start is in progress: Pending until the start queue
        decided; then ``active`` at once if the start waits in the queue, or runs in a spare
        slot (every regular slot is busy with another tenant's burst: the CLI's start on a
        busy host is seconds the create need not wait; its first message waits for it). One
        that runs is waited for, but not for a retry after an attempt that was only slow (the
        host is busy; the retry queues again): the create then answers ``active`` too."""
        if self._life.status is not SessionStatus.STARTING:
            return self._load()  # answered once already (the start goes on for the first message)
        admission = self._starts.admission()
        assert admission is not None  # a start is in progress: ensure() answered Pending
        decided, word, slowed = admission
        if not decided.done():
            return Pending(decided)
        if word == starting.REFUSED:
            return started  # its failure is the create's, once the start is over
        if word == starting.RUNS and not slowed.done():
            return Pending(slowed, started.begun)
        self._starts.detach_create()
        reason = _EARLY[word] if word in _EARLY else "its start is retried (slow under load)"
        return self._transition(SessionStatus.ACTIVE, f"{reason}; the first message waits for it")

    def pause(self) -> SessionRow | Pending:
        """ACTIVE -> PAUSED: the workspace is snapshotted; a live sandbox is kept (warm resume)."""
        self._load()
        self._life.check_idle("paused")
        self._life.plan(SessionStatus.PAUSED, "paused by request")
        pending = self._starts.pending() or self._held.settle_snapshot(self._draft)
        return pending or self._transition(SessionStatus.PAUSED, "paused by request")

    def resume(self) -> SessionRow | Pending:
        """PAUSED|STOPPED|ERROR|STARTING -> ACTIVE, warm if the sandbox lives, else cold
        (files from the snapshot, conversation from the store). ACTIVE is a no-op; ENDED is 410.
        The row is read afresh: another writer may have paused the session meanwhile (the
        runner liveness sweep pauses the sessions of a runner that died), unless it is on no
        runner: nobody else writes the status of a session this daemon holds the actor of (another
        coordinator's use takes its lease first, and the lease tells this actor ``forget_row``)."""
        if self._row is None or self._row.runner_id is not None:
            self._row = None
        row = self._load()
        if row.status == SessionStatus.ACTIVE.value:
            return row
        self._life.plan(SessionStatus.ACTIVE, "resume")
        if self._resume_path is None:  # the first call, not a repeat
            if row.status == SessionStatus.ERROR.value:
                self._starts.afresh()  # an operator asked: start afresh
            self._check_alive()
            self._resume_path = "warm" if self._held.started is not None else "cold"
        path = self._resume_path
        try:
            started = self._ensure_sandbox("run")
        except Exception:
            self._resume_path = None
            raise
        if isinstance(started, Pending):
            return started
        self._resume_path = None
        resumed = self._transition(SessionStatus.ACTIVE, f"{path} resume")
        # The one place a resume is counted: /metrics here, /health through the pool.
        self._deps.metrics.resumes.labels(path).inc()
        tell(self._deps.pool.count_resume, path, context=f"session {self._id}: counting a {path} resume")
        if path == "cold":
            self._deps.metrics.resumes_cold.labels(self._cold_source).inc()
        return resumed

    def pause_viewed(self) -> SessionView | Pending:
        """``pause``, with whether the agent process stays warm: the API answers without
        reading the sandbox's row."""
        return self._viewed(self.pause())

    def resume_viewed(self) -> SessionView | Pending:
        """``resume``, with whether the agent process lives (an active session's may be parked)."""
        return self._viewed(self.resume())

    def _viewed(self, answer: SessionRow | Pending) -> SessionView | Pending:
        return answer if isinstance(answer, Pending) else SessionView(answer, self._held.started is not None)

    def stop_session(self) -> SessionRow | Pending:
        """ACTIVE|STARTING -> STOPPED: snapshot, destroy the sandbox, keep the workspace.
        A start in progress is cancelled (waited for while an attempt runs)."""
        self._load()
        self._life.check_idle("stopped")
        self._life.plan(SessionStatus.STOPPED, "stopped by request")
        pending = self._starts.cancel() or self._held.settle_snapshot(self._draft)
        if pending is not None:
            return pending
        self._held.release()
        return self._transition(SessionStatus.STOPPED, "stopped by request")

    def end_session(self) -> SessionRow | Pending:
        """Any -> ENDED (idempotent): the sandbox is destroyed; the session is final."""
        row = self._load()
        if row.status == SessionStatus.ENDED.value:
            self._held.release()
            self._discard_folder()
            return row
        pending = self._starts.cancel() or self._held.settle_snapshot(self._draft)
        if pending is not None:
            return pending
        self._held.release()
        ended = self._transition(SessionStatus.ENDED, "ended by request")
        self._discard_folder()  # final: its files stay readable from the snapshot
        return ended

    def configure(self, patch: dict[str, object]) -> SessionRow | Pending:
        """Patch-merge session options for later turns. A live agent process is replaced
        (the conversation resumes) so tool and prompt changes take effect. Raises BadRequest."""
        row = self._load()
        self._life.check_idle("reconfigured")
        pending = self._starts.pending()
        if pending is not None:
            return pending
        merged = {**SessionOptions.from_json(row.config).to_request(), **patch}
        options = SessionOptions.from_request(merged)
        self._held.release()
        self._set_row(self._deps.store.update_session(
            self._tenant, self._id, config=options.to_json(), model=options.model, touch=True) or row)
        log.info("session %s: configuration changed (%s)", self._id, ", ".join(sorted(patch)) or "nothing")
        return self._load()

    def fork(self, child_id: str) -> SessionRow | Pending:
        """A new PAUSED session with this one's files and conversation (parentSessionId).
        Repeat it with the same ``child_id`` after a Pending."""
        row = self._load()
        if not self._life.busy:
            pending = self._held.settle_snapshot(self._draft)
            if pending is not None:
                return pending
        store = self._deps.store
        child = store.create_session(
            tenant_id=self._tenant, session_id=child_id, agent_name=row.agent_name,
            status=SessionStatus.PAUSED.value, sandbox_id=child_id, model=row.model,
            config=row.config, parent_session_id=self._id,
        )
        store.copy_messages(self._tenant, self._id, child_id)
        copied = self._deps.snapshots.copy(self._id, child_id, self._tenant)
        log.info("session %s forked from %s (files %s)", child_id, self._id, "copied" if copied else "fresh")
        return child

    # -- idle ------------------------------------------------------------------

    def _arm_idle(self, delay_s: float) -> None:
        me = self._me
        self._idle_timer = self._timers.call_later(
            delay_s, lambda: tell(me.idle_timer_fired, context=f"session {self._id}: idle check"))

    def idle_timer_fired(self) -> None:
        """Told by the timer: stop this actor if it has been quiet for ``idle_s``."""
        quiet_for = self._now() - self._active_at
        if self._quiet() and quiet_for >= self._deps.idle_s:
            log.info("session %s: actor idle for %.0fs; retiring it (it comes back from the store on demand)",
                     self._id, quiet_for)
            if self._supervisor is None or not tell(self._supervisor.retire, self._id, self.actor_ref.actor_urn,
                                                    context=f"session {self._id}: retiring its idle actor"):
                self.actor_ref.stop(block=False)
                return
            self._arm_idle(self._deps.idle_s)  # in case the supervisor keeps it (just handed to a caller)
            return
        self._arm_idle(max(self._deps.idle_s - quiet_for, 0.1) if self._quiet() else self._deps.idle_s)

    def _quiet(self) -> bool:
        """Nothing here that a new actor loaded from the store would not have."""
        return (self._held.started is None and not self._starts.in_progress and not self._life.busy and not self._draft
                and not self._held.settling)  # a stop whose caller gave up
