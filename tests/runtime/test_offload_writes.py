"""Offload's writes: one at a time, in the order asked for, whether the writer thread runs
them or the loop writes at once (SQLite, ``Offload.write_at_once``)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

import pytest

from ashd.runtime import offload as offload_module
from ashd.runtime.offload import Offload


def test_writes_at_once_run_only_once_allowed() -> None:
    offload = Offload()
    ran: list[str] = []
    assert offload.write_at_once(lambda: ran.append("now") is None) is False
    assert ran == []
    offload.allow_writes_at_once(lambda: None)
    assert offload.write_at_once(lambda: ran.append(threading.current_thread().name) is None) is True
    assert ran == [threading.current_thread().name]  # on the caller's thread
    assert offload.write_at_once(lambda: False) is False  # the write could not run without waiting
    offload.shutdown()


def test_a_write_at_once_never_overtakes_a_queued_write() -> None:
    offload = Offload()
    offload.allow_writes_at_once(lambda: None)
    order: list[str] = []
    started, release = threading.Event(), threading.Event()

    def slow(name: str) -> None:
        started.set()
        release.wait(30)
        order.append(name)

    async def scenario() -> None:
        running = asyncio.ensure_future(offload.write(slow, "running"))
        queued = asyncio.ensure_future(offload.write(order.append, "queued"))
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 30)
        assert offload.write_at_once(lambda: order.append("at once") is None) is False  # the writer is busy
        release.set()
        await asyncio.gather(running, queued)
        assert offload.write_at_once(lambda: order.append("at once") is None) is True  # idle again

    asyncio.run(scenario())
    offload.shutdown()
    assert order == ["running", "queued", "at once"]


def test_a_queued_write_cancelled_before_it_ran_does_not_keep_the_loop_from_writing() -> None:
    offload = Offload()
    offload.allow_writes_at_once(lambda: None)
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def slow() -> None:
        started.set()
        release.wait(30)

    async def scenario() -> None:
        running = asyncio.ensure_future(offload.write(slow))
        given_up = asyncio.ensure_future(offload.write(ran.append, "never"))
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 30)
        given_up.cancel()  # its caller went away before the writer reached it
        with contextlib.suppress(asyncio.CancelledError):
            await given_up  # the cancel has reached the queued write (it runs first)
        release.set()
        await running
        await asyncio.sleep(0.05)  # the cancelled write's done callback has run
        assert offload.write_at_once(lambda: ran.append("at once") is None) is True

    asyncio.run(scenario())
    offload.shutdown()
    assert ran == ["at once"]


def test_the_writer_thread_checkpoints_after_every_so_many_writes_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(offload_module, "CHECKPOINT_EVERY", 3)
    offload = Offload()
    checkpoints: list[str] = []
    offload.allow_writes_at_once(lambda: checkpoints.append(threading.current_thread().name))
    done = 0
    for _ in range(500):  # a queued checkpoint makes the loop's writes wait their turn meanwhile
        if offload.write_at_once(lambda: True):
            done += 1
            if done == 7:
                break
        else:
            time.sleep(0.01)
    offload.shutdown()  # waits for the queued checkpoints
    assert done == 7
    assert len(checkpoints) == 2
    assert all(name.startswith("ashd-write") for name in checkpoints)
