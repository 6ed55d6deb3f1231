"""ashd/runtime/tenant_turns.py: a per-tenant bound on running turns, fair to other tenants."""

from __future__ import annotations

import asyncio

import pytest

from ashd.errors import RateLimited
from ashd.runtime.tenant_turns import TenantTurns


def test_a_tenant_at_its_bound_waits_while_another_tenant_runs_at_once() -> None:
    async def scenario() -> None:
        turns = TenantTurns(limit=2, wait_s=5)
        first, second = await turns.admit("busy"), await turns.admit("busy")
        third = asyncio.ensure_future(turns.admit("busy"))
        await asyncio.sleep(0.05)
        assert not third.done()  # over the bound: waits for one of its own turns
        other = await asyncio.wait_for(turns.admit("quiet"), 0.5)  # another tenant never waits on it
        assert turns.running("quiet") == 1 and turns.running("busy") == 2
        first()
        release_third = await asyncio.wait_for(third, 1)
        assert turns.running("busy") == 2  # the slot passed on
        for release in (second, release_third, other):
            release()
        assert turns.running("busy") == 0 and turns.running("quiet") == 0

    asyncio.run(scenario())


def test_a_wait_past_its_bound_is_a_429_with_retry_after_and_leaves_no_trace() -> None:
    async def scenario() -> None:
        turns = TenantTurns(limit=1, wait_s=0.05)
        held = await turns.admit("t")
        with pytest.raises(RateLimited) as refused:
            await turns.admit("t")
        assert refused.value.status == 429 and refused.value.retry_after_s >= 1
        assert "pool.max_turns_per_tenant" in refused.value.message
        held()
        held()  # idempotent
        again = await asyncio.wait_for(turns.admit("t"), 0.5)  # the gave-up waiter holds nothing
        again()
        assert turns.running("t") == 0

    asyncio.run(scenario())


def test_zero_is_unbounded() -> None:
    async def scenario() -> None:
        turns = TenantTurns(limit=0)
        releases = [await asyncio.wait_for(turns.admit("t"), 0.5) for _ in range(50)]
        assert turns.running("t") == 50
        for release in releases:
            release()

    asyncio.run(scenario())
