"""SessionRuntime: the one typed async API over live sessions (loop thread only).

Every caller that drives sessions — the HTTP handlers, the prompt queue's workers, the eval
runner, the daemon — uses this and nothing below it: no actor proxy, no pykka future, no
socket path or pid crosses it, so a second implementation can drive sandboxes on another
machine. :class:`~ashd.runtime.local.LocalRuntime` implements it over the local actor tree and
the bridge sockets.

Sessions are named by (tenant id, session id); callers check that the session exists for the
tenant before they call (a store read, unless :meth:`SessionRuntime.holds` says so). Errors are the project's error tree
(``ashd.errors``): BadRequest (the session's status forbids it), Conflict (a turn is running,
nothing to interrupt), NotFound, Unavailable (capacity, a start that took too long, ashd
stopping), SandboxFailed.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable
from typing import Any, Protocol

from ashd.actors.messages import PoolStats, SessionView
from ashd.actors.vitals import Readiness, Verdict, readiness
from ashd.mailbox import Idle
from ashd.metrics import LiveFigures
from ashd.options import MessageOptions, SessionOptions
from ashd.runtime.turn import Turn
from ashd.sandbox.logring import LogLine
from ashd.store import AgentRow, SessionRow
from ashd.wire.protocol import ExecResult

# The health vocabulary handlers use, re-exported so they need nothing of the actors.
__all__ = ["Readiness", "SessionRuntime", "Verdict", "readiness"]


class SessionRuntime(Protocol):
    # -- lifecycle ---------------------------------------------------------

    async def create(self, tenant_id: str, agent: AgentRow, options: SessionOptions, *,
                     may_use_prewarmed: bool) -> SessionRow:
        """A new active session of ``agent`` (a pre-warmed sandbox serves when allowed)."""

    async def pause(self, tenant_id: str, session_id: str) -> SessionView:
        """ACTIVE -> PAUSED (workspace snapshotted; a live agent process is kept). Conflict
        while a turn runs."""

    async def resume(self, tenant_id: str, session_id: str) -> SessionView:
        """-> ACTIVE, warm if its agent process lives, else cold (files and conversation restored)."""

    async def stop(self, tenant_id: str, session_id: str) -> SessionRow:
        """-> STOPPED: a running turn is ended first (error + done), the sandbox destroyed."""

    async def end(self, tenant_id: str, session_id: str) -> SessionRow:
        """-> ENDED, for good (idempotent): a running turn is ended first, the sandbox destroyed,
        and every piece of the session's runtime state let go."""

    async def end_agent_sessions(self, tenant_id: str, session_ids: Iterable[str]) -> None:
        """End each of these sessions (an agent is being deleted)."""

    async def fork(self, tenant_id: str, session_id: str) -> SessionRow:
        """A new PAUSED session with this one's files and conversation."""

    async def configure(self, tenant_id: str, session_id: str, patch: dict[str, Any]) -> SessionRow:
        """Patch-merge the session's options for later turns. BadRequest for a bad value."""

    # -- turns -------------------------------------------------------------

    async def send(self, tenant_id: str, session_id: str, options: MessageOptions,
                   received_at: float | None = None) -> Turn:
        """Start one turn (it runs on, stored, whoever listens). BadRequest unless the session
        is active, Conflict while another turn runs. ``received_at``: ``time.monotonic()`` when
        the request arrived, for the overhead metric."""

    def live_turn(self, session_id: str) -> Turn | None:
        """The session's running turn, if any."""

    def holds(self, tenant_id: str, session_id: str) -> bool:
        """True when this runtime holds the live state of the tenant's session (so it exists
        for that tenant: a caller may skip its store read). Never blocks."""

    def subscribe(self, tenant_id: str, session_id: str, after: int = 0, *, follow: bool = False,
                  batched: bool = False) -> AsyncGenerator[bytes | Idle, None]:
        """SSE frames after event id ``after``: stored ones, then the running turn's; with
        ``follow``, each next turn's too until the session ends. :class:`Idle` marks a quiet
        heartbeat period. Close it (``aclosing``) when the client goes. ``batched``: an item
        may hold several frames (one write for a replay page or a backlog)."""

    def turn_stream(self, turn: Turn, *, batched: bool = False) -> AsyncGenerator[bytes | Idle, None]:
        """One turn's SSE frames to its ``done``, with heartbeat marks (``batched``: as above)."""

    async def interrupt(self, tenant_id: str, session_id: str) -> None:
        """Ask the running turn to stop (the SDK's interrupt). Conflict when none runs or its
        agent cannot be reached."""

    # -- the sandbox -------------------------------------------------------

    async def exec(self, tenant_id: str, session_id: str, command: str, timeout_ms: int) -> ExecResult:
        """Run ``command`` in the session's live sandbox. Conflict when it has none."""

    def logs(self, session_id: str, after: int = -1) -> list[LogLine]:
        """The agent process's recent output lines with an index above ``after``."""

    def notice(self, session_id: str, payload: dict[str, Any]) -> None:
        """A sandbox fact (an OOM kill, an egress decision): logged and shown on the running turn."""

    def prewarm(self, agent: AgentRow, count: int) -> None:
        """Keep ``count`` pre-warmed sandboxes of this agent version ready (fire and forget)."""

    # -- health ------------------------------------------------------------

    async def pool_stats(self) -> PoolStats:
        """Sandboxes by state, capacity, warm and cold resumes."""

    async def prewarm_hits(self) -> int:
        """Creates served by a pre-warmed sandbox since start."""

    def start_verdict(self) -> Verdict:
        """Whether sandbox starts succeed (ok/degraded, why, the last failure)."""

    def supervision(self) -> dict[str, Any]:
        """Restarts per child of the supervision tree, and the children given up on (/health)."""

    def admission(self) -> dict[str, int]:
        """Sandbox starts running and queued now, and their bounds (/health); {} if unbounded."""

    async def inject_fault(self, target: str, session_id: str | None, tenant_id: str) -> None:
        """TEST ONLY (``debug.fault_injection``): crash the named part as a bug would."""

    async def answers(self, timeout_s: float) -> bool:
        """Whether the runtime's long-lived parts answer within ``timeout_s`` (readiness, watchdog)."""

    def live_figures(self) -> LiveFigures:
        """Ash's gauges for /metrics. Blocking (a short ask, a store read): a reader thread only."""

    # -- shutdown ----------------------------------------------------------

    async def drain(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for running turns to end (their streams end with done)."""
