"""How a turn reaches a session of this daemon (:class:`LocalTurnHost`): the actor that granted
it (release, kill), its turn gate if it was taken through one, and its bridge link."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pykka

from ashd.actors.messages import Pending, TurnGrant
from ashd.actors.session import SessionActor
from ashd.actors.tell import tell
from ashd.actors.turn_gate import TurnGate
from ashd.runtime.live import LiveSession
from ashd.runtime.offload import Offload
from ashd.runtime.turn import KILL_TIMEOUT_S
from ashd.wire.link import BridgeLink

Actor = pykka.ActorProxy[SessionActor]
LimitTurn = Callable[[str, float | None], None]  # (sandbox id, budget or None) at the model proxy


def hand_back_grant(actor: Actor, late: TurnGrant | Pending) -> None:
    """A turn granted after its caller gave up: nobody will run it, so release it at once."""
    if isinstance(late, TurnGrant):
        tell(actor.end_turn, context=f"session {late.session_id}: releasing a turn its caller gave up")


def end_gated(gate: TurnGate, owner: Actor, session_id: str) -> None:
    """A turn taken through ``gate`` is over: the gate takes the next one at once; its actor
    is told (it does what ``end_turn`` does at its next message)."""
    gate.end()
    tell(owner.turn_ended, context=f"session {session_id}: releasing its turn")


class LocalTurnHost:
    """How a turn reaches a local session: its actor (release, kill) and its bridge link."""

    def __init__(self, live: LiveSession, grant: TurnGrant, owner: Actor,
                 actor: Callable[[str, str], Awaitable[Actor]], offload: Offload, limit_turn: LimitTurn | None,
                 gate: TurnGate | None = None) -> None:
        self._live = live
        self._gate = gate  # the turn gate the turn was taken through, if it was
        self._grant = grant
        self._owner = owner  # the actor that granted the turn
        self._actor = actor
        self._offload = offload
        self._limit_turn = limit_turn

    async def connect(self) -> BridgeLink:
        return await self._live.link.get(self._grant)

    def ready_link(self) -> BridgeLink | None:
        return self._live.link.ready(self._grant)

    def drop_link(self) -> None:
        self._live.link.drop()

    async def exit_reason(self) -> str | None:
        return await self._live.exit_reason(self._grant.pid)

    def release(self) -> None:
        """A tell to the actor that granted the turn, queued in the loop step after ``done`` is
        delivered, before the loop reads another request: a client's next message asks the
        same actor's mailbox later, so it is never refused for this turn. An actor that stopped
        meanwhile holds no turn (its successor loads the session from the store, idle). A turn
        taken through the gate is released there first."""
        if self._gate is not None:
            end_gated(self._gate, self._owner, self._grant.session_id)
            return
        tell(self._owner.end_turn, context=f"session {self._grant.session_id}: releasing its turn")

    async def kill(self, why: str) -> None:
        actor = await self._actor(self._grant.tenant_id, self._grant.session_id)
        await self._offload.ask(actor.kill_agent(why), timeout=KILL_TIMEOUT_S)

    def bind_budget(self, usd: float | None) -> None:
        if self._limit_turn is not None:
            self._limit_turn(self._grant.sandbox_id, usd)
