"""Who and what the pool holds: a sandbox's owner (:class:`SandboxOwner`, a session actor the
pool tells facts to) and each live sandbox (:class:`LiveSandbox`). Pool actor thread only."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

import pykka

from ashd.actors.messages import BridgeExited
from ashd.actors.sandbox import SandboxActor
from ashd.lifecycle import SandboxLifecycle
from ashd.sandbox.launcher import SandboxSpec
from ashd.states import SandboxState


class SandboxOwner(Protocol):
    """Who a sandbox belongs to (a SessionActor proxy); told facts, never asked."""

    actor_ref: pykka.ActorRef[Any]

    def sandbox_lost(self, fact: BridgeExited) -> Any: ...

    def evict(self, sandbox_id: str, reason: str) -> Any: ...

    def park(self, sandbox_id: str, reason: str) -> Any: ...

    def move(self, sandbox_id: str, reason: str) -> Any: ...


@dataclass
class LiveSandbox:
    """A sandbox the pool holds: its actor, its spec, its state and its owner."""

    ref: pykka.ActorRef[SandboxActor]
    spec: SandboxSpec
    life: SandboxLifecycle
    owner: SandboxOwner
    last_used: float
    prewarm: bool = False  # no session row yet (a pre-warm); cleared once a session claims it
    # A turn's flips (running, then waiting) stay in memory (two writes per turn saved): the row
    # says the sandbox is up, "waiting" from the end of its first turn on; the pool's figures
    # (/health, metrics) say which sandboxes are running.
    row_waiting: bool = False
    # Set when the sandbox is dropped: ends its start at once if one is in progress (the sandbox
    # actor's thread is held by it, so a stop in its mailbox would wait up to the ready timeout).
    abort: threading.Event = field(default_factory=threading.Event)

    @property
    def state(self) -> SandboxState:
        return self.life.state
