"""TurnGate: a warm, idle session's next turn, taken on the loop without asking its actor.

A ``begin_turn`` ask costs a warm message two thread hand-offs (loop -> actor -> loop) and
the actor's own work before the query can go to the agent. When the session can take a turn
as it is (active, a live agent process, no turn, no start, nothing settling), its actor
leaves the turn it would grant in its gate; the runtime takes it on the loop in one locked
step and tells the actor afterwards (``turn_taken``), without waiting.

Safety rests on one rule, kept by ``SessionActor._handle_receive``: the gate is shut at the
start of every message the actor handles, and opened again after it only if the session can
still take a turn (or could, once a turn taken through it has ended: the runtime's turns
follow each other through the gate without the actor). So turns are only ever taken and
ended *between* two of the actor's messages, and the shutting reports them
(:meth:`TurnGate.close`): the actor then holds a running one as begun, exactly as if a
``begin_turn`` had been the message before, and does for an ended one what ``end_turn`` does.
No method of the actor ever sees the turn state change under it; a park, pause, stop, end,
hand-over or a lost agent process that comes after a taken turn finds the session busy, as
with an asked one.

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
    """A turn the actor offers: its grant, the actor's proxy (told ``turn_taken``, and
    ``turn_ended`` at the turn's end) and the gate it came from (told :meth:`TurnGate.end`)."""

    grant: TurnGrant
    owner: Any  # pykka.ActorProxy[SessionActor]
    gate: TurnGate


@dataclass(frozen=True)
class GateNews:
    """What the runtime did through the gate since the actor last shut it."""

    taken: int  # turns taken
    ended: int  # turns taken here that ended
    running: bool  # a turn taken here runs now

    @property
    def none(self) -> bool:
        return not self.taken and not self.ended


class TurnGate:
    """One session actor's offered turn. The offer stays while a turn taken through it runs
    (the actor lends the session to the runtime's turns): once that turn has ended
    (:meth:`end`), the next one is taken at once, without waiting for the actor to hear of
    the end. The actor learns all of it when it next shuts the gate (:meth:`close`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offer: OpenTurn | None = None
        self._running = False  # a turn taken here has not ended (survives a shut: it is the runtime's)
        self._taken = 0
        self._ended = 0

    def open(self, grant: TurnGrant, owner: Any) -> None:
        """Offer a turn with ``grant`` (the actor's thread, at the end of a message)."""
        with self._lock:
            self._offer = OpenTurn(grant, owner, self)

    def take(self, tenant_id: str) -> OpenTurn | None:
        """The offered turn of ``tenant_id``'s session, now the caller's, who must call
        :meth:`end` when it is over; None if the gate is shut, a turn taken here still runs,
        or it offers another tenant's turn: the caller asks ``begin_turn`` instead."""
        with self._lock:
            turn = self._offer
            if turn is None or self._running or turn.grant.tenant_id != tenant_id:
                return None
            self._running = True
            self._taken += 1
            return turn

    def end(self) -> None:
        """The turn taken here is over (any thread; never blocks beyond the lock)."""
        with self._lock:
            if self._running:
                self._running = False
                self._ended += 1

    def close(self) -> GateNews:
        """Shut the gate (the actor's thread, before it acts): what happened since the last
        shutting. A turn that ``running`` says runs must be held as begun."""
        with self._lock:
            news = GateNews(self._taken, self._ended, self._running)
            self._offer, self._taken, self._ended = None, 0, 0
            return news


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
