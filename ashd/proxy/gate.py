"""One sandbox's view of the model proxy (:class:`Gate`: its token, its session's and its
turn's budget, what it spent) and the budget arithmetic on it. Proxy loop thread, except
``ModelProxy.limit_turn``, which sets a turn's budget under the proxy's lock."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from ashd.config import Secret
from ashd.proxy.body_memo import BodyMemo

READING_PER_SANDBOX = 2  # request bodies a sandbox may have ashd read (and hold) at once


@dataclass
class Gate:
    """One sandbox's view of the proxy."""

    session_id: str
    tenant_id: str
    agent_name: str
    token: str
    budget_usd: float | None
    spent_usd: float = 0.0
    requests: int = 0
    upstream_key: Secret | None = None  # the session's stored credential; None: the daemon's key
    refused: set[str] = field(default_factory=set)  # features refused so far (logged once each)
    checked: BodyMemo = field(default_factory=BodyMemo)  # its last body that passed (ashd/proxy/body_memo.py)
    reading: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(READING_PER_SANDBOX))
    # The running turn's own maxBudgetUsd, counted from turn_start_usd (see limit_turn).
    turn_budget_usd: float | None = None
    turn_start_usd: float = 0.0


def over_budget(gate: Gate) -> bool:
    return (gate.budget_usd is not None and gate.spent_usd >= gate.budget_usd) or over_turn_budget(gate)


def over_turn_budget(gate: Gate) -> bool:
    return gate.turn_budget_usd is not None and gate.spent_usd - gate.turn_start_usd >= gate.turn_budget_usd


def budget_message(gate: Gate) -> str:
    if over_turn_budget(gate):
        return (f"turn budget exhausted: this turn spent ${gate.spent_usd - gate.turn_start_usd:.4f} of "
                f"${gate.turn_budget_usd or 0:.4f} (the message's maxBudgetUsd)")
    return (f"session budget exhausted: spent ${gate.spent_usd:.4f} of ${gate.budget_usd or 0:.4f} "
            "(maxBudgetUsd)")


def charge(gate: Gate, cost: float, charged: float) -> float:
    """Bring the gate's spend up to date with one reply's cost so far; returns that cost."""
    gate.spent_usd += cost - charged
    return cost
