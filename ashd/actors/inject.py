"""TEST ONLY: crash a named actor of a running daemon (``POST /api/internal/faults``).

The fault is a *tell* of ``inject_fault`` (see :mod:`ashd.actors.faults`): it raises inside
the target actor like a real bug, so pykka's ``on_failure`` and the supervisors' restarts run
for real. Only reachable when ``debug.fault_injection`` is on (off by default).
"""

from __future__ import annotations

from ashd.actors.supervisor import Tree
from ashd.actors.tell import tell
from ashd.errors import BadRequest, Conflict

TARGETS = ("pool", "sessions", "session", "sandbox")
ASK_TIMEOUT_S = 10.0


def inject(tree: Tree, target: str, session_id: str | None, tenant_id: str) -> None:
    """Crash ``target``: the pool, the session supervisor, or a session's actor or sandbox
    actor (``session_id`` needed). Blocking (short asks): run it on a reader thread.
    Raises BadRequest for an unknown target, Conflict when the session has no sandbox."""
    reason = f"{target} {session_id or ''}".strip()
    if target == "pool":
        tell(tree.pool.inject_fault, reason, context="fault injection")
    elif target == "sessions":
        tell(tree.sessions.inject_fault, reason, context="fault injection")
    elif target in ("session", "sandbox"):
        if not session_id:
            raise BadRequest(f"target {target} needs a sessionId")
        if target == "session":
            actor = tree.sessions.child(session_id, tenant_id).get(timeout=ASK_TIMEOUT_S)
            tell(actor.inject_fault, reason, context="fault injection")
            return
        sandbox = tree.pool.sandbox_of(session_id).get(timeout=ASK_TIMEOUT_S)
        if sandbox is None:
            raise Conflict(f"session {session_id} has no live sandbox to crash; send it a message first")
        tell(sandbox.inject_fault, reason, context="fault injection")
    else:
        raise BadRequest(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
