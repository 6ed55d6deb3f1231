"""with_heartbeats: quiet periods become IDLE marks; the source is read only when asked;
closing early closes the source at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from ashd.mailbox import IDLE
from ashd.runtime.sequence import EventSequence
from ashd.runtime.streams import with_heartbeats


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


def test_the_source_is_read_only_when_the_next_item_is_asked_for() -> None:
    async def scenario() -> list[str]:
        events: list[str] = []

        async def source() -> AsyncGenerator[bytes, None]:
            for item in (b"a", b"b", b"c"):
                events.append(f"read {item.decode()}")
                yield item

        stream = with_heartbeats(source(), 5)
        assert await stream.__anext__() == b"a"
        await asyncio.sleep(0.05)  # a slow client: nothing more is read meanwhile
        events.append("asked")
        assert await stream.__anext__() == b"b"
        await asyncio.sleep(0.05)
        await stream.aclose()
        return events

    assert asyncio.run(scenario()) == ["read a", "asked", "read b"]


def test_a_source_failure_reaches_the_reader() -> None:
    async def scenario() -> list[object]:
        async def source() -> AsyncGenerator[bytes, None]:
            yield b"a"
            raise OSError("the store is gone")

        seen: list[object] = []
        try:
            async for item in with_heartbeats(source(), 5):
                seen.append(item)
        except OSError as exc:
            seen.append(str(exc))
        return seen

    assert asyncio.run(scenario()) == [b"a", "the store is gone"]


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
