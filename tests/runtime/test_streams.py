"""with_heartbeats: quiet periods become IDLE marks; closing early closes the source at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from ashd.runtime.sequence import EventSequence
from ashd.runtime.streams import with_heartbeats
from ashd.runtime.watchdog import IDLE


def test_quiet_periods_between_items_are_marked() -> None:
    async def scenario() -> list[object]:
        opened = asyncio.Event()

        async def source() -> AsyncGenerator[bytes, None]:
            yield b"a"
            await opened.wait()
            yield b"b"

        seen: list[object] = []
        async for item in with_heartbeats(source(), 0.02):
            seen.append(item)
            if seen.count(IDLE) == 2:
                opened.set()
        return seen

    seen = asyncio.run(scenario())
    assert seen[0] == b"a" and seen[-1] == b"b"
    assert seen[1:-1] == [IDLE, IDLE]


def test_closing_early_closes_the_source_while_it_waits() -> None:
    async def scenario() -> list[str]:
        events: list[str] = []

        async def source() -> AsyncGenerator[bytes, None]:
            try:
                yield b"a"
                await asyncio.Event().wait()  # never set: a turn that has not started
                yield b"never"
            finally:
                events.append("source closed")

        stream = with_heartbeats(source(), 0.02)
        assert await stream.__anext__() == b"a"
        assert await stream.__anext__() is IDLE
        await stream.aclose()
        events.append("stream closed")
        return events

    assert asyncio.run(scenario()) == ["source closed", "stream closed"]


def test_event_ids_follow_the_stored_ones_and_are_never_reused() -> None:
    sequence = EventSequence(last=41)
    assert [sequence.take() for _ in range(3)] == [42, 43, 44]
    assert sequence.last == 44
