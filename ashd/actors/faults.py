"""Crash reports and the test-only fault hook of supervised actors.

:class:`FaultTarget` gives an actor ``inject_fault``: told (never asked) by
``POST /api/internal/faults`` when ``debug.fault_injection`` is on, it raises inside the actor
exactly like a bug would, so pykka's ``on_failure`` path and the supervisor's restart run
for real. Off by default; see docs/operations.md ("Fault injection").
"""

from __future__ import annotations


class InjectedFault(RuntimeError):
    """Raised on purpose inside an actor by the fault hook (tests only)."""


class FaultTarget:
    """Mixin for actors the fault hook can crash."""

    def inject_fault(self, reason: str) -> None:
        """Crash this actor (when told: its ``on_failure`` runs and it stops)."""
        raise InjectedFault(f"injected fault: {reason}")


def crash_detail(exc: BaseException | None) -> str:
    """One line naming an exception, for logs, /health and the restart policy."""
    if exc is None:
        return "unknown failure"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
