"""Frozen messages that cross actor threads. Facts sent up are past tense; replies are nouns."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass

from ashd.store import SessionRow


@dataclass(frozen=True)
class SandboxStarted:
    """Reply of a sandbox start: where the data plane connects."""

    sandbox_id: str
    socket_path: str
    pid: int
    start_ms: float


@dataclass(frozen=True)
class BridgeExited:
    """A bridge process ended. ``expected`` is False for crashes and kills from outside."""

    sandbox_id: str
    session_id: str
    returncode: int
    expected: bool
    reason: str | None = None  # from the launcher, e.g. "killed: out of memory (limit 512 MiB)"

    @property
    def signal(self) -> int | None:
        return -self.returncode if self.returncode < 0 else None


@dataclass(frozen=True)
class TurnGrant:
    """Permission to run one turn: the session is marked busy until ``end_turn``."""

    tenant_id: str
    session_id: str
    sandbox_id: str
    socket_path: str
    pid: int


@dataclass(frozen=True)
class PoolStats:
    total: int
    warming: int
    warm: int
    running: int
    waiting: int
    cold: int
    max_capacity: int
    resume_warm: int = 0
    resume_cold: int = 0


@dataclass(frozen=True)
class Pending:
    """Reply of a call that needs a sandbox start (or a wait) that runs off the actor's
    thread: ``until`` resolves when that work is over (successfully or not); the caller then
    repeats the same call, which now answers (or raises what the start raised).
    ``begun``, for a sandbox start, resolves when the start left the start queue
    (``ashd/actors/start_gate.py``) and began: a caller's deadline counts from then, so time
    spent queued behind a burst is not charged to it. None: nothing queues."""

    until: Future[None]
    begun: Future[None] | None = None


@dataclass(frozen=True)
class SessionView:
    """Reply of a pause or resume: the session's row as the call left it, and whether its
    agent process lives (the API's ``runtime``: warm or parked), as its actor knows it."""

    row: SessionRow
    warm: bool
