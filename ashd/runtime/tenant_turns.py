"""Fair turns: at most ``pool.max_turns_per_tenant`` turns of one tenant run at once.

A tenant's burst of messages must not take every CPU second of a small host while another
tenant's first reply waits behind it (issue #18). Each tenant gets its own bound; a turn over
it waits (FIFO within the tenant) up to ``wait_s`` for one of the tenant's own turns to end,
then is refused with 429 and ``Retry-After``. Waiting briefly rather than refusing at once
keeps a tenant's short burst served (every message answered) while its long one yields.
Other tenants never wait on this tenant's bound.

Loop thread only (asyncio futures; no locks).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ashd.errors import RateLimited

log = logging.getLogger(__name__)

# How long a turn over its tenant's bound waits for a slot before 429: long enough for a
# burst's turns to take their turns on a busy 2-core host (30 s refused most of a 64 x 3 burst
# there, benchmarks/results/load.json); the start queue's wait is bounded likewise.
WAIT_S = 600.0


@dataclass
class _Tenant:
    running: int = 0
    waiting: deque[asyncio.Future[None]] = field(default_factory=deque)


class TenantTurns:
    """Counts running turns per tenant. ``limit`` 0: unbounded (admit never waits)."""

    def __init__(self, limit: int, wait_s: float = WAIT_S) -> None:
        self._limit = limit
        self._wait_s = wait_s
        self._tenants: dict[str, _Tenant] = {}

    def running(self, tenant_id: str) -> int:
        tenant = self._tenants.get(tenant_id)
        return tenant.running if tenant is not None else 0

    async def admit(self, tenant_id: str) -> Callable[[], None]:
        """A slot for one turn of ``tenant_id`` (waits while the tenant is at its bound);
        returns the function that gives it back (call it exactly once, when the turn ended
        or was never started). Raises RateLimited when the wait passes ``wait_s``."""
        tenant = self._tenants.setdefault(tenant_id, _Tenant())
        tenant.waiting = deque(w for w in tenant.waiting if not w.done())  # those that gave up
        if self._limit and (tenant.running >= self._limit or tenant.waiting):
            await self._wait(tenant_id, tenant)
        else:
            tenant.running += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._release(tenant_id)

        return release

    async def _wait(self, tenant_id: str, tenant: _Tenant) -> None:
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        tenant.waiting.append(turn)
        log.info("tenant %s runs %d turns (pool.max_turns_per_tenant); a turn waits for one to end",
                 tenant_id, tenant.running)
        try:
            await asyncio.wait_for(asyncio.shield(turn), self._wait_s)
        except TimeoutError:
            if turn.done():  # handed a slot just as the wait ended: keep it
                return
            turn.cancel()
            self._forget_if_idle(tenant_id)
            raise RateLimited(f"This tenant already runs {self._limit} turns at once (pool.max_turns_per_tenant) "
                              f"and none ended within {self._wait_s:.0f}s; retry shortly", retry_after_s=5) from None
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._release(tenant_id)  # the caller went away holding a slot it was handed
            else:
                turn.cancel()
            raise

    def _release(self, tenant_id: str) -> None:
        tenant = self._tenants.get(tenant_id)
        if tenant is None:
            return
        while tenant.waiting:
            following = tenant.waiting.popleft()
            if not following.done():
                following.set_result(None)  # the slot passes on: running stays the same
                return
        tenant.running -= 1
        self._forget_if_idle(tenant_id)

    def _forget_if_idle(self, tenant_id: str) -> None:
        tenant = self._tenants.get(tenant_id)
        if tenant is not None and tenant.running <= 0 and not any(not w.done() for w in tenant.waiting):
            del self._tenants[tenant_id]
