"""The turn watchdog's clock: quiet periods become IDLE markers; the source is never closed by them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from ashd.mailbox import IDLE
from ashd.runtime.watchdog import watched


async def paced(gaps: list[float]) -> AsyncIterator[int]:
    for i, gap in enumerate(gaps):
        await asyncio.sleep(gap)
        yield i


async def collect(source: AsyncIterator[int], idle_s: float) -> list[object]:
    return [item async for item in watched(source, idle_s)]


def test_a_quiet_source_yields_idle_markers_and_then_its_items() -> None:
    items = asyncio.run(collect(paced([0, 0.35, 0]), idle_s=0.1))
    assert items[0] == 0 and items[-2:] == [1, 2]
    assert items.count(IDLE) >= 2  # the source was not closed by them: 1 and 2 still came


def test_a_busy_source_yields_no_marker() -> None:
    assert asyncio.run(collect(paced([0, 0, 0]), idle_s=5)) == [0, 1, 2]


def test_the_source_error_reaches_the_reader() -> None:
    async def failing() -> AsyncIterator[int]:
        yield 1
        raise ConnectionError("gone")

    with pytest.raises(ConnectionError, match="gone"):
        asyncio.run(collect(failing(), idle_s=5))
