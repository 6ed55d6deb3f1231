"""Workspace bundles take the data disk two at a time and never into the store's floor."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ashd.errors import InsufficientStorage
from ashd.files.bundle_room import BundleRoom
from ashd.snapshot.room import DiskFloor


class Floor(DiskFloor):
    def __init__(self, free: int, min_free: int) -> None:
        super().__init__(Path("/"), min_free)
        self.free_bytes = free

    def free(self) -> int:
        return self.free_bytes


def test_at_most_two_bundles_are_written_at_once() -> None:
    async def main() -> None:
        room, inside, most = BundleRoom(Floor(10_000, 0), largest=100), 0, 0
        release = asyncio.Event()

        async def bundle() -> None:
            nonlocal inside, most
            async with room.taken():
                inside += 1
                most = max(most, inside)
                await release.wait()
                inside -= 1

        tasks = [asyncio.ensure_future(bundle()) for _ in range(5)]
        await asyncio.sleep(0.05)
        assert inside == 2  # the other three wait their turn
        release.set()
        await asyncio.gather(*tasks)
        assert most == 2

    asyncio.run(main())


def test_a_bundle_starts_only_if_the_floor_holds_beside_those_in_flight() -> None:
    async def main() -> None:
        room = BundleRoom(Floor(free=1000, min_free=700), largest=200)
        async with room.taken():  # 1000 - 200 >= 700
            with pytest.raises(InsufficientStorage) as refused:  # 1000 - 2 * 200 < 700
                async with room.taken():
                    pass
        assert refused.value.status == 507 and "too full to bundle" in refused.value.message
        async with room.taken():  # the first is over: room again
            pass

    asyncio.run(main())
