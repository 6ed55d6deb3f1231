"""Pure state machines of a session and of a sandbox, over the tables of ``ashd/states.py``.

No store, no actors, no clock, no I/O: an actor holds one, asks it whether a change is
allowed, and performs the side effects itself (persist, log, metrics) in its one
``_transition``. Tested without threads (tests/unit/test_lifecycle.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from ashd.errors import BadRequest, Conflict
from ashd.states import SANDBOX_TRANSITIONS, SandboxState, SessionStatus, check_session_transition

# Statuses whose reason is kept on the row (``statusReason``): why it stopped being usable.
_KEEPS_REASON = frozenset({SessionStatus.ERROR, SessionStatus.PAUSED})


@dataclass(frozen=True)
class Change:
    """One allowed status change, planned but not yet applied."""

    before: SessionStatus
    after: SessionStatus
    reason: str

    @property
    def status_reason(self) -> str | None:
        """What the row's ``statusReason`` becomes (None clears it)."""
        return self.reason if self.after in _KEEPS_REASON else None


class SessionLifecycle:
    """One session's status and its turn gate (one turn at a time). Not thread-safe: owned
    by one actor."""

    def __init__(self, status: SessionStatus) -> None:
        self.status = status
        self.busy = False  # a turn holds the session (between begin_turn and end_turn)

    def plan(self, to: SessionStatus, reason: str) -> Change:
        """The change to ``to``, unapplied. Raises Gone (ended) or BadRequest if the table
        forbids it."""
        check_session_transition(self.status, to)
        return Change(self.status, to, reason)

    def apply(self, change: Change) -> None:
        """Record a planned change once its side effects are done (the row is persisted)."""
        self.status = change.after

    def check_turn(self) -> None:
        """Raises BadRequest unless active, Conflict while a turn runs."""
        if self.status is not SessionStatus.ACTIVE:
            raise BadRequest(f"Session is {self.status.value}")
        if self.busy:
            raise Conflict("A turn is already running in this session; wait for its done event")

    def check_idle(self, to: str) -> None:
        """Raises Conflict while a turn runs: ``to`` names what the session cannot become."""
        if self.busy:
            raise Conflict(f"A turn is running; interrupt it or wait for done before the session can be {to}")

    def begin_turn(self) -> None:
        self.check_turn()
        self.busy = True

    def hold_turn(self) -> None:
        """A turn granted already (taken through the session's turn gate): held as it is."""
        self.busy = True

    def end_turn(self) -> None:
        self.busy = False


class SandboxLifecycle:
    """One sandbox's pool state: warming -> warm -> running <-> waiting, any -> cold."""

    def __init__(self, state: SandboxState = SandboxState.WARMING) -> None:
        self.state = state

    def allows(self, to: SandboxState) -> bool:
        return to is self.state or to in SANDBOX_TRANSITIONS[self.state]

    def transition(self, to: SandboxState) -> bool:
        """Move to ``to``. True if the state changed; False if it was already there.
        Raises ValueError for a change the table forbids (the state stays)."""
        if not self.allows(to):
            raise ValueError(f"sandbox cannot go from {self.state.value} to {to.value}")
        changed = to is not self.state
        self.state = to
        return changed
