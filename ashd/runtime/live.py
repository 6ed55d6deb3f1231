"""LiveSession: the one owner of a live session's runtime state (loop thread only).

The session actor owns the session's lifecycle (status, sandbox, one turn at a time); what
the data plane needs about a live session is here, in one object: its running turn, its
bridge link, its exit facts (read from the :class:`ExitBoard` the sandbox's exit watcher
writes), its event ids. The runtime keeps one per session that has been used since it
started, and drops it when the session ends or stops (an ended session has no runtime
state; a stopped one reads its event ids again when it is used).
"""

from __future__ import annotations

from typing import Any

from ashd.actors.exits import ExitBoard
from ashd.actors.messages import BridgeExited
from ashd.runtime.links import SessionLink
from ashd.runtime.offload import Offload
from ashd.runtime.sequence import EventSequence
from ashd.runtime.turn import Turn
from ashd.store import Store

EXIT_WAIT_S = 0.5  # how long a dropped turn waits to learn why its agent process died


class LiveSession:
    def __init__(self, tenant_id: str, session_id: str, store: Store, offload: Offload, exits: ExitBoard) -> None:
        self.tenant_id = tenant_id
        self.session_id = session_id
        self._store = store
        self._offload = offload
        self._exits = exits
        self.link = SessionLink(store, offload)
        self.turn: Turn | None = None  # the running turn, until it has ended
        self._sequence: EventSequence | None = None
        self.actor: Any = None  # the session actor's proxy the last turn was granted by (while it lives)
        self.retiring = False  # ended or stopped while a turn still ran: dropped when it ends
        self.claims = 0  # sends between their claim of the session and their turn (busy for a handover)

    async def sequence(self) -> EventSequence:
        """The session's event ids: the stored highest id is read once, then kept here."""
        if self._sequence is None:
            last = await self._offload.read(self._store.last_stream_event, self.tenant_id, self.session_id)
            if self._sequence is None:  # another caller may have read it meanwhile
                self._sequence = EventSequence(last.seq if last else 0)
        return self._sequence

    def created(self) -> None:
        """The session was just created here: it has no events yet, so its ids start at 1
        without a store read."""
        if self._sequence is None:
            self._sequence = EventSequence(0)

    def forget_sequence(self) -> None:
        """Read the event ids from the store again at the next turn (another coordinator may
        have run turns of this session meanwhile)."""
        self._sequence = None

    def exited(self, pid: int) -> BridgeExited | None:
        """The exit of the agent process ``pid``, if it is already known (never waits)."""
        return self._exits.wait(pid, 0.0)

    async def exit_reason(self, pid: int) -> str | None:
        """Why ``pid`` exited, waiting up to :data:`EXIT_WAIT_S` for its watcher to say."""
        fact = await self._offload.read(self._exits.wait, pid, EXIT_WAIT_S)
        return fact.reason if fact is not None else None

    def close(self) -> None:
        self.link.drop()
