"""SessionMoves: a session actor letting its sandbox go while the session lives on.

Told by the pool: an idle timeout evicts (the session pauses), a park frees the sandbox of an
active session (its next message wakes it), a drain moves it to another runner; another
coordinator may ask for it (a handover). Each saves the workspace first and does nothing
mid-turn (see ashd/actors/session_base.py).
"""

from __future__ import annotations

import logging

from ashd.actors.messages import SandboxStarted
from ashd.actors.session_sandbox import SessionSandbox
from ashd.actors.tell import tell
from ashd.states import SessionStatus

log = logging.getLogger(__name__)


class SessionMoves(SessionSandbox):
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
        is started at once, placed on another runner (ashd/sandbox/placement.py),
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
