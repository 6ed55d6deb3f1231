"""Workspace bundles: two under way per tenant, and never into the store's floor."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ashd.errors import InsufficientStorage
from ashd.http.bundle_room import BundleRoom
from ashd.snapshot.room import DiskFloor


class Floor(DiskFloor):
    def __init__(self, free: int, min_free: int) -> None:
        super().__init__(Path("/"), min_free)
        self.free_bytes = free

    def free(self) -> int:
        return self.free_bytes


def test_a_tenant_has_two_bundles_under_way_at_once_and_holds_up_no_other() -> None:
    async def main() -> None:
        room = BundleRoom(Floor(10_000, 0), largest=100)
        inside: dict[str, int] = {"slow": 0, "other": 0}
        most: dict[str, int] = {"slow": 0, "other": 0}
        release = asyncio.Event()

        async def bundle(tenant: str) -> None:
            async with room.taken(tenant):
                inside[tenant] += 1
                most[tenant] = max(most[tenant], inside[tenant])
                await release.wait()
                inside[tenant] -= 1

        tasks = [asyncio.ensure_future(bundle(t)) for t in ["slow"] * 5 + ["other"] * 2]
        await asyncio.sleep(0.05)
        assert inside == {"slow": 2, "other": 2}  # the slow tenant's other three wait their turn
        release.set()
        await asyncio.gather(*tasks)
        assert most == {"slow": 2, "other": 2}

    asyncio.run(main())


def test_a_bundle_starts_only_if_the_floor_holds_beside_those_in_flight() -> None:
    async def main() -> None:
        room = BundleRoom(Floor(free=1000, min_free=700), largest=200)
        async with room.taken("a"):  # 1000 - 200 >= 700
            with pytest.raises(InsufficientStorage) as refused:  # 1000 - 2 * 200 < 700, whoever asks
                async with room.taken("b"):
                    pass
        assert refused.value.status == 507 and "too full to bundle" in refused.value.message
        async with room.taken("b"):  # the first is over: room again
            pass

    asyncio.run(main())
