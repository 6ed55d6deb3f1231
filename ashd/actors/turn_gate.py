"""TurnGate: a warm, idle session's next turn, taken on the loop without asking its actor.

A ``begin_turn`` ask costs a warm message two thread hand-offs (loop -> actor -> loop) and
the actor's own work before the query can go to the agent. When the session can take a turn
as it is (active, a live agent process, no turn, no start, nothing settling), its actor
leaves the turn it would grant in its gate; the runtime takes it on the loop in one locked
step and tells the actor afterwards (``turn_taken``), without waiting.

Safety rests on one rule, kept by ``SessionActor._handle_receive``: the gate is shut at the
start of every message the actor handles, and opened again after it only if the session can
still take a turn. So a turn is only ever taken *between* two of the actor's messages, and
the shutting reports it (:meth:`TurnGate.close` answers the taken turn): the actor then holds
the turn as begun, exactly as if a ``begin_turn`` had been the message before. No method of
the actor ever sees the turn state change under it; a park, pause, stop, end, hand-over or a
lost agent process that comes after a taken turn finds the session busy, as with an asked one.

A gate that is shut costs only speed: the caller asks ``begin_turn`` as before, which queues
behind whatever the actor is doing. Thread-safe; never blocks beyond its lock.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from ashd.actors.messages import TurnGrant


@dataclass(frozen=True)
class OpenTurn:
    """A turn the actor offers: its grant, and the actor's proxy (told ``turn_taken`` and,
    at the turn's end, ``end_turn``)."""

    grant: TurnGrant
    owner: Any  # pykka.ActorProxy[SessionActor]


class TurnGate:
    """One session actor's offered turn: open (a turn to take), taken (not yet seen by the
    actor), or shut."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: OpenTurn | None = None
        self._taken: OpenTurn | None = None

    def open(self, turn: OpenTurn) -> None:
        """Offer ``turn`` (the actor's thread, at the end of a message). Raises RuntimeError
        if a taken turn was not collected by :meth:`close` first."""
        with self._lock:
            if self._taken is not None:
                raise RuntimeError("a turn taken through the gate was not collected before it reopened")
            self._open = turn

    def take(self, tenant_id: str) -> OpenTurn | None:
        """The offered turn of ``tenant_id``'s session, now the caller's; None if the gate is
        shut (or offers another tenant's turn): the caller asks ``begin_turn`` instead."""
        with self._lock:
            turn = self._open
            if turn is None or turn.grant.tenant_id != tenant_id:
                return None
            self._open, self._taken = None, turn
            return turn

    def close(self) -> OpenTurn | None:
        """Shut the gate (the actor's thread, before it acts). Returns the turn taken since it
        was opened, if any: the actor must hold it as begun. Idempotent."""
        with self._lock:
            taken, self._open, self._taken = self._taken, None, None
            return taken


class TurnGates:
    """Every live session actor's gate, by session id (made by the runtime, which takes; each
    session actor puts its own in when it starts and takes it out when it stops).
    Thread-safe. After :meth:`shut_all` (the daemon stops) nothing can be taken any more."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gates: dict[str, TurnGate] = {}
        self._shut = False

    def put(self, session_id: str, gate: TurnGate) -> None:
        with self._lock:
            self._gates[session_id] = gate

    def remove(self, session_id: str, gate: TurnGate) -> None:
        """Forget ``gate`` unless another actor of the session has put its own since."""
        with self._lock:
            if self._gates.get(session_id) is gate:
                del self._gates[session_id]

    def take(self, tenant_id: str, session_id: str) -> OpenTurn | None:
        """The session's offered turn (see :meth:`TurnGate.take`); None if it has none."""
        with self._lock:
            gate = None if self._shut else self._gates.get(session_id)
        return gate.take(tenant_id) if gate is not None else None

    def shut_all(self) -> None:
        """The daemon is stopping: every later turn is asked for (and refused by a stopped tree)."""
        with self._lock:
            self._shut = True
