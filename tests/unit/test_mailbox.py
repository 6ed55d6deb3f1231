"""Mailbox: a put wakes the one reader; a quiet period ends its wait with False; order is kept."""

from __future__ import annotations

import asyncio

from ashd.mailbox import Mailbox


def test_a_waiting_reader_is_woken_by_a_put_and_takes_items_in_order() -> None:
    async def scenario() -> list[int]:
        box: Mailbox[int] = Mailbox()
        loop = asyncio.get_running_loop()
        loop.call_later(0.01, box.put, 1)
        loop.call_later(0.01, box.put, 2)
        assert await box.wait(5.0)
        taken = []
        while box:
            taken.append(box.take())
        return taken

    assert asyncio.run(scenario()) == [1, 2]


def test_a_quiet_period_ends_the_wait_and_a_later_put_is_still_seen() -> None:
    async def scenario() -> tuple[bool, bool, int]:
        box: Mailbox[int] = Mailbox()
        quiet = await box.wait(0.02)
        asyncio.get_running_loop().call_later(0.01, box.put, 7)
        return quiet, await box.wait(0.05) or await box.wait(5.0), box.take()

    assert asyncio.run(scenario()) == (False, True, 7)


def test_an_item_already_there_is_true_at_once_without_a_quiet_period() -> None:
    async def scenario() -> bool:
        box: Mailbox[str] = Mailbox()
        box.put("x")
        return await asyncio.wait_for(box.wait(), 1.0)

    assert asyncio.run(scenario())
