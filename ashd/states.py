"""State enums and their allowed transitions (Ash's names, Ash's values on the wire)."""

from __future__ import annotations

from enum import StrEnum

from ashd.errors import BadRequest, Gone


class SessionStatus(StrEnum):
    STARTING = "starting"
    ACTIVE = "active"
    PAUSED = "paused"
    STOPPED = "stopped"
    ENDED = "ended"
    ERROR = "error"


class SandboxState(StrEnum):
    WARMING = "warming"
    WARM = "warm"
    RUNNING = "running"
    WAITING = "waiting"
    COLD = "cold"


_S = SessionStatus
SESSION_TRANSITIONS: dict[SessionStatus, frozenset[SessionStatus]] = {
    _S.STARTING: frozenset({_S.ACTIVE, _S.ERROR, _S.STOPPED, _S.ENDED}),
    _S.ACTIVE: frozenset({_S.PAUSED, _S.STOPPED, _S.ENDED, _S.ERROR}),
    _S.PAUSED: frozenset({_S.ACTIVE, _S.STOPPED, _S.ENDED, _S.ERROR}),
    _S.STOPPED: frozenset({_S.ACTIVE, _S.ENDED, _S.ERROR}),
    _S.ERROR: frozenset({_S.ACTIVE, _S.STOPPED, _S.ENDED}),
    _S.ENDED: frozenset(),
}


_B = SandboxState
# A sandbox's life in the pool: a start (warming) ends ready (warm) or gone (cold); a ready
# sandbox alternates between running a turn and waiting for the next; any state may end cold.
# warm <-> waiting: both are idle (a turn that ended on an agent restarted meanwhile).
SANDBOX_TRANSITIONS: dict[SandboxState, frozenset[SandboxState]] = {
    _B.WARMING: frozenset({_B.WARM, _B.COLD}),
    _B.WARM: frozenset({_B.RUNNING, _B.WAITING, _B.COLD}),
    _B.RUNNING: frozenset({_B.WAITING, _B.COLD}),
    _B.WAITING: frozenset({_B.RUNNING, _B.WARM, _B.COLD}),
    _B.COLD: frozenset({_B.WARMING}),
}


def check_session_transition(current: SessionStatus, to: SessionStatus) -> None:
    """Raise the client-facing error for a transition the table forbids."""
    if to in SESSION_TRANSITIONS[current]:
        return
    if current is SessionStatus.ENDED:
        raise Gone("Session has ended and cannot be used again; create a new session")
    raise BadRequest(f"Session is {current.value}; cannot move it to {to.value}")
