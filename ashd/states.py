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


def check_session_transition(current: SessionStatus, to: SessionStatus) -> None:
    """Raise the client-facing error for a transition the table forbids."""
    if to in SESSION_TRANSITIONS[current]:
        return
    if current is SessionStatus.ENDED:
        raise Gone("Session has ended and cannot be used again; create a new session")
    raise BadRequest(f"Session is {current.value}; cannot move it to {to.value}")
