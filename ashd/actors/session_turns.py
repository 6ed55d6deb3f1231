"""SessionTurns: a session actor's turns, asked for or taken through its turn gate.

A turn is asked for (``begin_turn`` ... ``end_turn``), or, for a warm and idle session, taken
by the runtime through the actor's :class:`~ashd.actors.turn_gate.TurnGate` without an ask:
the gate is shut at the start of every message and opened after it (``_handle_receive``), so
no method sees the session's turn change under it (see ashd/actors/session_base.py).
"""

from __future__ import annotations

import logging
from typing import Any

import pykka

from ashd.actors.messages import Pending, SandboxStarted, TurnGrant
from ashd.actors.session_deps import SessionDeps
from ashd.actors.session_sandbox import SessionSandbox
from ashd.actors.tell import tell
from ashd.actors.turn_gate import TurnGate
from ashd.errors import Conflict
from ashd.states import SandboxState, SessionStatus

log = logging.getLogger(__name__)

TOUCH_EVERY_S = 1.0  # the row's last activity is written at most this often (turns in a burst: once)

# Messages that neither read nor change what a turn depends on: they run with the turn gate as
# it is (a turn may be taken meanwhile), so the write after every turn (``after_turn``) never
# makes the next message ask for its turn.
_BESIDE_TURNS = frozenset({"after_turn"})


class SessionTurns(SessionSandbox):
    def __init__(self, session_id: str, tenant_id: str, deps: SessionDeps, supervisor: Any = None) -> None:
        super().__init__(session_id, tenant_id, deps, supervisor)
        self._touched_at: float | None = None  # when a turn's end last wrote the row's last activity
        self._waking_since: float | None = None  # when a turn began starting a CLI for a parked session
        self._gate = TurnGate()  # the next turn, offered to the runtime between messages (turn_gate.py)
        self._gated = False  # the turn that runs was taken through the gate (it ends there, not by end_turn)

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
