"""SessionBase: a session actor's state, its row and the one place its status changes.

:class:`~ashd.actors.session.SessionActor` is one pykka actor whose messages are grouped by
concern, one module each, in one chain of classes:

- ``SessionBase`` (here): its state, its row, :meth:`_transition`;
- :class:`~ashd.actors.session_sandbox.SessionSandbox`: starting its sandbox, and losing it;
- :class:`~ashd.actors.session_turns.SessionTurns`: turns and the turn gate;
- :class:`~ashd.actors.session_moves.SessionMoves`: letting its sandbox go (evict, park, move,
  hand over);
- :class:`~ashd.actors.session.SessionActor`: its hooks, lifecycle requests and idle timeout.

Every method of every part runs on the actor's own thread.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import pykka

from ashd.actors.answers import answered_future
from ashd.actors.faults import FaultTarget
from ashd.actors.held_sandbox import HeldSandbox
from ashd.actors.session_deps import SessionDeps
from ashd.actors.spec import SpecBuilder
from ashd.actors.starts import SessionStarts
from ashd.actors.timers import Timers
from ashd.errors import NotFound
from ashd.lifecycle import SessionLifecycle
from ashd.states import SessionStatus
from ashd.store import SessionRow

if TYPE_CHECKING:
    from ashd.actors.session import SessionActor

log = logging.getLogger(__name__)


class SessionBase(FaultTarget, pykka.ThreadingActor):
    _create_future = staticmethod(answered_future)  # replies wake the loop (ashd/actors/answers.py)
    _starts: SessionStarts  # made by SessionSandbox, which gives it its callbacks

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
        self._active_at = self._now()

    @functools.cached_property
    def _me(self) -> pykka.ActorProxy[SessionActor]:
        """This actor's own proxy for messages to itself, made once: pykka introspects every
        attribute of the actor to make a proxy (~2 ms of CPU, which was paid per turn)."""
        return cast("pykka.ActorProxy[SessionActor]", self.actor_ref.proxy())

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
        """Remove this session's sandbox folder once its last sandbox's teardown finished."""
        self._held.discard_folder((self._row.sandbox_id if self._row is not None else None) or self._id)
