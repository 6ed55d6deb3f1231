"""Parking: which idle sessions give their CLI back, and how many CLIs may live at once.

A warm session holds its Claude CLI, bridge and bwrap (~194 MiB PSS). A parked one holds
none: its sandbox is released (workspace files and conversation stay, its status stays
``active``) and its next message starts the CLI again with the conversation (a wake).
These decisions are pure (a clock and the facts are passed in) so they are tested alone;
the :class:`~ashd.actors.pool.PoolActor` applies them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ashd.states import SandboxState

MIB = 1 << 20
RESERVE_BYTES = 1 << 30  # memory left for ashd itself, the page cache and the rest of the host
WARM_SESSION_BYTES = 250 * MIB  # a warm session's PSS (CLI 140 + bridge 54 + bwrap), rounded up
IDLE_STATES = (SandboxState.WARM, SandboxState.WAITING)


@dataclass(frozen=True)
class Warm:
    """One live sandbox as the park decision sees it."""

    sandbox_id: str
    state: SandboxState
    last_used: float  # monotonic seconds of its last turn (or start)
    leaving: bool = False  # already being evicted or parked
    prewarm: bool = False  # a pre-warmed sandbox no session has claimed yet


def idle(live: Warm) -> bool:
    """Between turns, started, not already leaving: the only sandboxes that may be parked."""
    return live.state in IDLE_STATES and not live.leaving


def due(sandboxes: Iterable[Warm], now: float, after_s: float, keep: Callable[[str], bool]) -> list[str]:
    """The idle sandboxes with no turn for ``after_s`` seconds, oldest first, except those
    ``keep`` says stay (a pre-warm, a session that is not active, queued prompts)."""
    old = sorted((live.last_used, live.sandbox_id) for live in sandboxes
                 if idle(live) and now - live.last_used >= after_s)
    return [sandbox_id for _, sandbox_id in old if not keep(sandbox_id)]


def least_recent(sandboxes: Iterable[Warm]) -> str | None:
    """The idle sandbox to park first at the cap, or None: an unclaimed pre-warm (no session
    loses its CLI for it), else the one used least recently."""
    idle_ones = [(not live.prewarm, live.last_used, live.sandbox_id) for live in sandboxes if idle(live)]
    return min(idle_ones)[2] if idle_ones else None


def relieve(sandboxes: Iterable[Warm], available: int, floor: int, keep: Callable[[str], bool]) -> list[str]:
    """Under memory pressure (``available`` bytes below ``floor``): the idle sandboxes to park
    now, least recently used first, enough to bring ``floor`` back at a warm session's PSS
    each (every idle one if that is not enough), less those already leaving. Nothing when
    memory is not short, or ``available`` is unknown (0)."""
    if available == 0 or available >= floor:
        return []
    live = list(sandboxes)
    wanted = -(-(floor - available) // WARM_SESSION_BYTES) - sum(1 for one in live if one.leaving)
    idle_ones = sorted((one.last_used, one.sandbox_id) for one in live if idle(one))
    return [sandbox_id for _, sandbox_id in idle_ones if not keep(sandbox_id)][:max(wanted, 0)]


def warm_cap(configured: int, meminfo: Path = Path("/proc/meminfo")) -> int:
    """``pool.max_warm_sessions``, or with -1 what the host's memory holds:
    (MemAvailable - :data:`RESERVE_BYTES`) / :data:`WARM_SESSION_BYTES`, at least 1."""
    if configured > 0:
        return configured
    return max(1, (available_bytes(meminfo) - RESERVE_BYTES) // WARM_SESSION_BYTES)


def available_bytes(meminfo: Path = Path("/proc/meminfo")) -> int:
    """MemAvailable of ``/proc/meminfo`` in bytes (0 if it cannot be read)."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0
