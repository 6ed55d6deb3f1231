"""SessionActor: one live session, a thin shell over the parts that do the work.

- its status and turn gate: :class:`~ashd.lifecycle.SessionLifecycle` (every status change
  goes through :meth:`SessionActor._transition`, which validates, persists, logs and counts);
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

import functools
import logging
from collections.abc import Callable
from types import TracebackType
from typing import Any

import pykka

from ashd.actors import start as starting
from ashd.actors.answers import answered_future
from ashd.actors.faults import FaultTarget, crash_detail
from ashd.actors.held_sandbox import HeldSandbox
from ashd.actors.messages import BridgeExited, Pending, SandboxStarted, SessionView, TurnGrant
from ashd.actors.session_deps import SessionDeps
from ashd.actors.spec import SpecBuilder
from ashd.actors.starts import SessionStarts, describe
from ashd.actors.tell import tell
from ashd.actors.timers import Timer, Timers
from ashd.actors.turn_gate import TurnGate
from ashd.errors import AshError, Conflict, NotFound, Unavailable
from ashd.lifecycle import SessionLifecycle
from ashd.options import SessionOptions
from ashd.policy import Escalate, GiveUp
from ashd.states import SandboxState, SessionStatus
from ashd.store import AgentRow, SessionRow, utc_now

log = logging.getLogger(__name__)

TOUCH_EVERY_S = 1.0  # the row's last activity is written at most this often (turns in a burst: once)


# Messages that neither read nor change what a turn depends on: they run with the turn gate as
# it is (a turn may be taken meanwhile), so the write after every turn (``after_turn``) never
# makes the next message ask for its turn.
_BESIDE_TURNS = frozenset({"after_turn"})

# Why a create answered before its agent process was up, by the start queue's word.
_EARLY = {starting.WAITS: "its start is queued",
          starting.SPARE: "its start runs beside another tenant's burst (a spare start slot)"}


class _Owner:
    """The session actor as its starts see it (ashd/actors/starts.py); on the actor's thread."""

    def __init__(self, session: SessionActor) -> None:
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


class SessionActor(FaultTarget, pykka.ThreadingActor):
    _create_future = staticmethod(answered_future)  # replies wake the loop (ashd/actors/answers.py)

    def __init__(self, session_id: str, tenant_id: str, deps: SessionDeps, supervisor: Any = None) -> None:
        """``supervisor``: the SessionSupervisor's proxy, told when this actor is idle."""
        super().__init__()
        if deps.timers is None or deps.snapshot_worker is None:
            raise ValueError("SessionDeps needs timers and a snapshot worker (the SessionSupervisor provides them)")
        self._id = session_id
        self._tenant = tenant_id
        self._deps = deps
        self._timers: Timers = deps.timers
        self._supervisor = supervisor
        self._builder = SpecBuilder(deps.store, deps.layout, deps.model, deps.sandbox, deps.snapshots,
                                    deps.cli_workspace, deps.credential_key)
        self._row: SessionRow | None = None
        self._life = SessionLifecycle(SessionStatus.STARTING)  # follows the row; busy is this actor's own
        self._held = HeldSandbox(session_id, tenant_id, deps, deps.snapshot_worker)
        self._draft = False  # pre-warmed, not yet a session (no database row)
        self._starts = SessionStarts(_Owner(self), session_id, tenant_id, deps.restarts, deps.starts)
        self._cold_source = "fresh"  # where the last start's workspace came from: local|cloud|fresh
        self._resume_path: str | None = None  # warm|cold while a resume waits for its start
        self._active_at = self._now()
        self._idle_timer: Timer | None = None
        self._touched_at: float | None = None  # when a turn's end last wrote the row's last activity
        self._waking_since: float | None = None  # when a turn began starting a CLI for a parked session
        self._gate = TurnGate()  # the next turn, offered to the runtime between messages (turn_gate.py)
        self._gated = False  # the turn that runs was taken through the gate (it ends there, not by end_turn)

    # -- actor hooks -----------------------------------------------------------

    @functools.cached_property
    def _me(self) -> pykka.ActorProxy[SessionActor]:
        """This actor's own proxy for messages to itself, made once: pykka introspects every
        attribute of the actor to make a proxy (~2 ms of CPU, which was paid per turn)."""
        return self.actor_ref.proxy()

    def on_start(self) -> None:
        self._arm_idle(self._deps.idle_s)
        if self._deps.turn_gates is not None:
            self._deps.turn_gates.put(self._id, self._gate)

    def _handle_receive(self, message: Any) -> Any:
        """Every message, on this actor's thread: the turn gate is shut first (turns the
        runtime took or ended through it since the last message are begun or ended here, as
        if ``begin_turn``/``end_turn`` had come just before), and opened again after a message
        that returned, if the session can take a turn. The runtime therefore only takes or
        ends a turn between two messages: no method here sees the session's turn change under
        it. A message that raised leaves the gate shut (the next one reopens it; meanwhile
        turns are asked for). Messages beside turns (``_BESIDE_TURNS``) leave the gate as it is."""
        if isinstance(message, pykka.messages.ProxyCall) and message.attr_path[-1] in _BESIDE_TURNS:
            return super()._handle_receive(message)
        self._collect_gate()
        answer = super()._handle_receive(message)
        self._offer_turn()
        return answer

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

    def evict(self, sandbox_id: str, reason: str) -> None:
        """Told by the pool (idle timeout): snapshot (on the worker), then free the sandbox
        and pause (:meth:`evict_snapshotted`)."""
        self._let_go(sandbox_id, reason, pause=True)

    def park(self, sandbox_id: str, reason: str) -> None:
        """Told by the pool (no turn for ``park_after_ms``, or room for another session at
        the cap): like an eviction, but the session stays ``active``; its next message
        starts the CLI again with the conversation (a wake)."""
        self._let_go(sandbox_id, reason, pause=False)

    def _let_go(self, sandbox_id: str, reason: str, *, pause: bool) -> None:
        if not self._owns_idle(sandbox_id):
            return
        if self._draft:  # an unclaimed pre-warm: nothing to keep (on_stop removes it)
            self.actor_ref.stop(block=False)
            return
        me = self._me
        self._held.snapshot().add_done_callback(
            lambda _: tell(me.evict_snapshotted, sandbox_id, reason, pause,
                           context=f"session {self._id}: letting its sandbox go after its snapshot"))

    def evict_snapshotted(self, sandbox_id: str, reason: str, pause: bool = True) -> None:
        """The snapshot is saved: unless a turn took the sandbox meanwhile, free it (and
        pause, for an eviction; a parked session stays active)."""
        if not self._owns_idle(sandbox_id):
            return
        # Parked or paused means nothing of the sandbox is left on the host (processes,
        # cgroups, mounts): its teardown is waited for before the pool marks it cold.
        self._held.release(settle=True)
        if not pause:
            log.info("session %s: parked (%s); its next message wakes it", self._id, reason)
        elif self._load().status == SessionStatus.ACTIVE.value:
            self._transition(SessionStatus.PAUSED, reason)  # ACTIVE -> PAUSED

    def move(self, sandbox_id: str, reason: str) -> None:
        """Told by the pool: the sandbox's runner drains. Like a park (snapshot on the worker,
        then the sandbox goes; :meth:`move_snapshotted`), and an active session's next sandbox
        is started at once, placed on another runner (ashd/sandbox/remote.py ``Placement``),
        so its next message finds it warm there. Nothing happens mid-turn."""
        if not self._owns_idle(sandbox_id):
            return
        if self._draft:  # an unclaimed pre-warm: nothing to keep (on_stop removes it)
            self.actor_ref.stop(block=False)
            return
        me, moving = self._me, self._held.started
        self._held.snapshot().add_done_callback(
            lambda _: tell(me.move_snapshotted, sandbox_id, reason, moving,
                           context=f"session {self._id}: moving its sandbox after its snapshot"))

    def move_snapshotted(self, sandbox_id: str, reason: str, moving: SandboxStarted | None) -> None:
        """The snapshot is saved: unless a turn took the sandbox meanwhile (or it was already
        replaced: ``moving`` is the sandbox :meth:`move` saw), free it and start the next one
        (conversation from the store, files from that snapshot)."""
        if not self._owns_idle(sandbox_id) or self._held.started is not moving:
            return
        self._held.release(settle=True)
        if self._load().status != SessionStatus.ACTIVE.value:
            log.info("session %s: sandbox moved off its runner (%s); it starts elsewhere when resumed",
                     self._id, reason)
            return
        log.info("session %s: moving off its runner (%s); starting its sandbox on another", self._id, reason)
        try:
            self._ensure_sandbox("run")
        except Exception as exc:  # boundary: the next message starts one (cold) and reports its failure
            log.warning("session %s: sandbox not started ahead of its next message: %s", self._id, exc)

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

    # -- turns -----------------------------------------------------------------

    def begin_turn(self) -> TurnGrant | Pending:
        """Claim the session for one turn, starting a sandbox first if it has none (Pending
        meanwhile). Raises BadRequest unless active, Conflict if a turn runs."""
        self._load()
        self._check_alive()  # a crash the pool has not reported yet may have ended this session
        try:
            if self._waking_since is not None:  # the repeat of a wake: its failure first, even if it ended in error
                self._starts.raise_failure()
            self._life.check_turn()
            if self._held.started is None and self._waking_since is None and self._starts.purpose != "first":
                self._waking_since = self._now()  # a wake: parked, or its CLI gone (a crash, a restart)
            started = self._ensure_sandbox("run")
        except Exception:
            self._waking_since = None
            raise
        if isinstance(started, Pending):
            return started
        if self._waking_since is not None:
            self._deps.metrics.wakes.inc()
            self._deps.metrics.wake_duration.observe(self._now() - self._waking_since)
            self._waking_since = None
        self._turn_begun(started)
        return self._grant_on(started)

    def _turn_begun(self, started: SandboxStarted, taken: bool = False) -> None:
        """The session is busy with a turn on ``started`` (asked, or ``taken`` through the gate)."""
        if taken:
            self._life.hold_turn()
        else:
            self._life.begin_turn()
        self._held.files_changed()
        tell(self._deps.pool.mark, started.sandbox_id, SandboxState.RUNNING,
             context=f"session {self._id}: marking its sandbox running")

    def turn_taken(self) -> None:
        """Told by the runtime right after it took a turn through the gate. The turn is held
        as begun by the gate's shutting at the start of this (or an earlier) message; this
        message makes that happen now, so the pool sees the sandbox running."""

    def turn_ended(self) -> None:
        """Told by the runtime when a turn taken through the gate is over (after the gate was
        told): the shutting at the start of this message did what ``end_turn`` does."""

    def _collect_gate(self) -> None:
        """What the runtime did through the gate since the last message: turns taken are held
        as begun, turns ended are released (as ``begin_turn`` and ``end_turn`` would)."""
        news = self._gate.close()
        if news.none:
            return
        self._active_at = self._now()
        if news.ended:
            self._gated = False
            self._turn_over()
        if news.taken:
            # Only messages beside turns ran since the gate opened: the sandbox is the grant's. The
            # turn is granted already, so it is held even if such a message re-read the row.
            assert self._held.started is not None
            self._held.files_changed()
        if news.running:
            assert self._held.started is not None
            self._gated = True
            self._turn_begun(self._held.started, taken=True)

    def _offer_turn(self) -> None:
        """Open the gate if the session can take a turn as it is: a ``begin_turn`` now would
        grant one at once, with no start, no wake and no crash to judge; or would, once the
        turn taken through the gate that runs has ended (the runtime takes the next one then)."""
        sandbox, exits = self._held.started, self._deps.exits
        if (sandbox is None or self._deps.turn_gates is None or self._row is None
                or self._life.status is not SessionStatus.ACTIVE or (self._life.busy and not self._gated)
                or self._draft or self._starts.in_progress or self._waking_since is not None
                or self.actor_stopped.is_set() or (exits is not None and exits.get(sandbox.pid) is not None)):
            return
        self._gate.open(self._grant_on(sandbox), self._me)

    def _grant_on(self, started: SandboxStarted) -> TurnGrant:
        """A turn's (or an exec's) grant on the session's live sandbox ``started``."""
        return TurnGrant(self._tenant, self._id, started.sandbox_id, started.socket_path, started.pid)

    def _forget_gate(self) -> None:
        """This actor stops: no turn is taken through its gate any more."""
        self._gate.close()
        if self._deps.turn_gates is not None:
            self._deps.turn_gates.remove(self._id, self._gate)

    def exec_target(self) -> TurnGrant:
        """Where an ``exec`` runs: the live sandbox of an active session (the session is not
        marked busy; an exec may run beside a turn). Raises Conflict otherwise."""
        row = self._load()
        if row.status == SessionStatus.ENDED.value:
            raise Conflict("Session has ended; commands can no longer run in it")
        if row.status != SessionStatus.ACTIVE.value:
            raise Conflict(f"Session is {row.status}; resume it first")
        if self._held.started is None:
            raise Conflict("Session has no running sandbox (its agent process exited); "
                           "send a message or resume it to start one")
        return self._grant_on(self._held.started)

    def end_turn(self) -> None:
        """Release the turn at once; the snapshot runs on the worker, the row is touched
        after this reply (at most every :data:`TOUCH_EVERY_S`). A ``begin_turn`` right after
        never waits for either. (A turn taken through the gate ends with ``turn_ended``.)"""
        if self._gated:
            return  # the turn that runs was taken through the gate: it ends there
        self._turn_over()

    def _turn_over(self) -> None:
        self._life.end_turn()
        if self._held.started is not None:
            tell(self._deps.pool.mark, self._held.started.sandbox_id, SandboxState.WAITING,
                 context=f"session {self._id}: marking its sandbox waiting")
            self._held.snapshot_after_turn()
        tell(self._me.after_turn, context=f"session {self._id}: recording its last activity")

    def after_turn(self) -> None:
        """Runs after end_turn's reply (a message to itself): the last activity, unless it was
        written less than :data:`TOUCH_EVERY_S` ago (then it may lag by that much)."""
        now = self._now()
        if self._touched_at is not None and now - self._touched_at < TOUCH_EVERY_S:
            return
        self._touched_at = now
        self._set_row(self._deps.store.update_session(self._tenant, self._id, touch=True) or self._row)

    def hand_over(self) -> bool:
        """Another coordinator wants this session (``ashd/runtime/ownership.py``): if it is idle
        (no turn, no start, no pause/stop waiting for its snapshot), give its sandbox up
        without stopping it, so the new owner adopts it warm on its runner, after the last
        turn's snapshot is saved; False (busy) otherwise. A sandbox that cannot be handed over
        (a local one, or the runner refused) is stopped instead: the next owner starts cold.
        Forgets the row: whoever owns the session next may change it. Blocks for the snapshot
        (bounded by ``stop_timeout_s``) and one round trip to the runner."""
        if self._life.busy or self._starts.in_progress or self._held.settling:
            return False
        self._held.hand_over()
        self._row = None
        return True

    def holds_sandbox(self) -> bool:
        return self._held.started is not None or self._starts.in_progress

    def forget_row(self) -> None:
        """Read the row afresh at the next use (another coordinator owned the session meanwhile)."""
        self._row = None

    def kill_agent(self, reason: str) -> None:
        """Kill this session's agent process at once (SIGKILL, no grace), even mid-turn.

        For a turn that is wedged or must end now (the turn watchdog; a stop during a turn):
        the running turn then sees its agent gone and ends with ``error`` + ``done``; the next
        turn starts a new agent process that resumes the conversation. Blocks until cleaned up.
        """
        if self._held.started is None:
            return
        log.warning("session %s: killing its agent process: %s", self._id, reason)
        self._held.release(grace_s=0.0)

    def sandbox_lost(self, fact: BridgeExited) -> None:
        """Told by the pool: the agent process died. Judge it; the next turn starts a new one."""
        if self._held.started is None or fact.sandbox_id != self._held.started.sandbox_id:
            return
        exits = self._deps.exits
        if exits is not None and exits.get(self._held.started.pid) is None:
            return  # about an earlier process of this sandbox id: the current one lives
        self._lose(fact)

    # -- the sandbox start (SessionStarts; Pending while it runs) ----------------

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

    # -- crashes ---------------------------------------------------------------

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

    # -- idle ----------------------------------------------------------------------

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

    # -- internals ---------------------------------------------------------------

    def _now(self) -> float:
        return self._deps.restarts.now()

    def _owns_idle(self, sandbox_id: str) -> bool:
        return (self._held.started is not None and self._held.started.sandbox_id == sandbox_id and not self._life.busy
                and not self._starts.in_progress)

    def _load(self) -> SessionRow:
        self._active_at = self._now()
        if self._row is None:
            self._set_row(self._deps.store.get_session(self._tenant, self._id))
        if self._row is None:
            raise NotFound(f"Session {self._id} not found")
        return self._row

    def _set_row(self, row: SessionRow | None) -> None:
        self._row = row
        if row is not None:
            self._life.status = SessionStatus(row.status)

    def _transition(self, to: SessionStatus, reason: str,
                    persist: Callable[[str, str | None], SessionRow | None] | None = None) -> SessionRow:
        """The one place a status changes: validate (the table), persist, log, count.
        ``persist(status, status_reason)``: how the row is written (default: an update of the
        stored row; a claimed pre-warm inserts its first row with the new status)."""
        self._load()
        change = self._life.plan(to, reason)
        if persist is None:
            updated = self._deps.store.set_session_status(self._tenant, self._id, to.value, change.status_reason)
        else:
            updated = persist(to.value, change.status_reason)
        if updated is None:
            raise NotFound(f"Session {self._id} not found")
        self._row = updated
        self._life.apply(change)
        log.info("session %s: %s -> %s (%s)", self._id, change.before.value, to.value, reason)
        self._deps.metrics.session_transitions.labels(to.value).inc()
        return updated

    def _drop_draft(self) -> None:
        try:
            self._held.release()
        except Exception:  # boundary: shutdown and eviction go on
            log.exception("pre-warmed sandbox %s did not stop cleanly", self._id)
            return
        self._discard_folder()

    def _discard_folder(self) -> None:
        self._held.discard_folder((self._row.sandbox_id if self._row is not None else None) or self._id)
