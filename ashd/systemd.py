"""sd_notify without libsystemd: READY, STOPPING, STATUS and the watchdog ping.

Readiness rules (docs/operations.md): ``READY=1`` is sent only once the store is migrated,
the actor tree answered a ping and HTTP listens; ``WATCHDOG=1`` only while the actor tree
answers a ping within its deadline (see :class:`Watchdog`), not merely while the IOLoop runs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

# ashd's exit status when its supervision tree gave up (a long-lived actor kept crashing):
# non-zero, so the unit's Restart=on-failure starts ashd again.
EXIT_TREE_FAILED = 3


def notify(state: str) -> bool:
    """Send one notification to $NOTIFY_SOCKET; False when not run by systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(state.encode(), address)
        except OSError:
            return False
    return True


def watchdog_interval_s() -> float | None:
    """Half of WatchdogSec (the recommended ping interval), or None when not enabled."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and int(pid) != os.getpid()):
        return None
    return int(usec) / 2_000_000


class Watchdog:
    """Sends ``WATCHDOG=1`` every ``interval_s`` while ``probe`` answers True.

    ``probe`` is awaited on the IOLoop (it must offload anything blocking) and must return
    within its own deadline; a probe that says False (the actor tree did not answer in time)
    or raises means no ping this round, so systemd restarts a daemon whose loop still spins
    but whose actors are stuck. Loop thread only.
    """

    def __init__(self, interval_s: float, probe: Callable[[], Awaitable[bool]]) -> None:
        self._interval_s = interval_s
        self._probe = probe
        self._task: asyncio.Task[None] | None = None
        self.pings = 0
        self.missed = 0

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def beat(self) -> bool:
        """One round: probe, then ping if healthy. Returns whether it pinged."""
        try:
            healthy = await self._probe()
        except Exception:  # boundary: a failing probe is a missed ping, never a dead watchdog
            log.exception("watchdog probe failed")
            healthy = False
        if not healthy:
            self.missed += 1
            log.error("watchdog: the actor tree did not answer; not pinging systemd (missed %d)", self.missed)
            return False
        self.pings += 1
        notify("WATCHDOG=1")
        return True

    async def _run(self) -> None:
        while True:
            await self.beat()
            await asyncio.sleep(self._interval_s)  # a period, not a wait for an event
