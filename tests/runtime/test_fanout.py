"""The stream fan-out (issue #11 item 5): a stream of a turn another daemon runs, on a real Postgres.

The "other daemon" is this test appending a turn's rows through the store, as a turn's group
commit does; the stream under test holds no live turn, so everything it yields comes from the
store, woken by the listener's notifications. The fan-out's re-read period is set far beyond
the tests' deadlines, so a stream that ends in time was woken by a notification (or, after a
reconnect, by the listener saying it listens again), not by the fallback re-read.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncGenerator, Iterator

import pytest
import sqlalchemy as sa

from ashd.mailbox import Idle
from ashd.runtime.fanout import StreamFanout
from ashd.runtime.following import SessionBell
from ashd.runtime.offload import Offload
from ashd.runtime.streams import SessionStreams
from ashd.store import Store
from tests.store.pg import backend_database

DEADLINE_S = 60.0  # generous: the machine is shared
NEVER_S = 3600.0  # a re-read period no test waits for
TENANT = "t1"
ID = re.compile(rb"^id: (\d+)$", re.M)


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with backend_database("postgres") as url:
        assert url is not None
        migrated = Store(url)
        migrated.migrate()
        migrated.close()
        yield url


@pytest.fixture
def store(pg_url: str) -> Iterator[Store]:
    store = Store(pg_url)
    yield store
    store.close()


def new_session(store: Store, session_id: str) -> str:
    store.create_session(TENANT, session_id, "qa", "active")
    return session_id


def events(first: int, names: list[str]) -> list[tuple[int, str, str]]:
    return [(first + i, name, "{}") for i, name in enumerate(names)]


async def ids_of(stream: AsyncGenerator[bytes | Idle, None], until: int | None = None) -> list[int]:
    """The event ids the stream yields, to its end (or to event ``until``), within the deadline."""
    seen: list[int] = []

    async def read() -> None:
        async for item in stream:
            if isinstance(item, bytes):
                match = ID.search(item)
                assert match is not None
                seen.append(int(match.group(1)))
                if seen[-1] == until:
                    return

    try:
        await asyncio.wait_for(read(), DEADLINE_S)
    finally:
        await stream.aclose()
    return seen


class World:
    """A stream runtime with no live turn of its own, over the store and a fan-out."""

    def __init__(self, store: Store, fanout: StreamFanout) -> None:
        self.store = store
        self.offload = Offload()
        self.fanout = fanout
        self.streams = SessionStreams(store, self.offload, SessionBell(), lambda session_id: None, 0.5, fanout)

    async def append(self, session_id: str, rows: list[tuple[int, str, str]]) -> None:
        """Another daemon's turn commits a batch."""
        await self.offload.write(self.store.append_log, TENANT, session_id, [], [], rows)

    def close(self) -> None:
        self.fanout.stop()
        self.offload.shutdown()


def started(store: Store, reread_s: float = NEVER_S) -> World:
    fanout = StreamFanout.start(store, asyncio.get_running_loop(), reread_s)
    assert fanout is not None
    return World(store, fanout)


def test_a_turn_running_elsewhere_is_replayed_after_the_id_then_followed_to_done(store: Store) -> None:
    sid = new_session(store, "remote-turn")
    store.append_log(TENANT, sid, [], [], events(1, ["session_start", "text_delta", "text_delta"]))

    async def scenario() -> list[int]:
        world = started(store)
        try:
            reader = asyncio.ensure_future(ids_of(world.streams.subscribe(TENANT, sid, after=1)))
            await asyncio.sleep(0.3)  # the replay is done and the stream waits
            assert not reader.done()
            await world.append(sid, events(4, ["text_delta", "message"]))
            await world.append(sid, events(6, ["turn_complete", "done"]))
            return await reader
        finally:
            world.close()

    assert asyncio.run(scenario()) == [2, 3, 4, 5, 6, 7]  # exactly the missed ones, then live, to done


def test_a_session_without_a_running_turn_ends_after_the_replay(store: Store) -> None:
    sid = new_session(store, "idle-session")
    store.append_log(TENANT, sid, [], [], events(1, ["session_start", "done"]))
    empty = new_session(store, "empty-session")

    async def scenario() -> tuple[list[int], list[int], list[int]]:
        world = started(store)
        try:
            return (await ids_of(world.streams.subscribe(TENANT, sid)),
                    await ids_of(world.streams.subscribe(TENANT, sid, after=2)),
                    await ids_of(world.streams.subscribe(TENANT, empty)))
        finally:
            world.close()

    assert asyncio.run(scenario()) == ([1, 2], [], [])


def test_following_takes_the_next_turns_from_elsewhere_as_they_commit(store: Store) -> None:
    sid = new_session(store, "remote-follow")
    store.append_log(TENANT, sid, [], [], events(1, ["session_start", "done"]))

    async def scenario() -> list[int]:
        world = started(store)
        try:
            reader = asyncio.ensure_future(ids_of(world.streams.subscribe(TENANT, sid, follow=True), until=7))
            await asyncio.sleep(0.3)
            await world.append(sid, events(3, ["session_start", "text_delta"]))
            await asyncio.sleep(0.1)
            await world.append(sid, events(5, ["done"]))
            await asyncio.sleep(0.3)
            assert not reader.done()  # following: still open between turns
            await world.append(sid, events(6, ["session_start", "done"]))
            return await reader
        finally:
            world.close()

    assert asyncio.run(scenario()) == [1, 2, 3, 4, 5, 6, 7]


def test_following_ends_when_the_session_ends(store: Store) -> None:
    sid = new_session(store, "remote-follow-end")
    store.append_log(TENANT, sid, [], [], events(1, ["session_start", "done"]))

    async def scenario() -> list[int]:
        world = started(store, reread_s=0.5)  # how soon it sees the session end (nothing is notified)
        try:
            reader = asyncio.ensure_future(ids_of(world.streams.subscribe(TENANT, sid, follow=True)))
            await asyncio.sleep(0.3)
            assert not reader.done()
            await world.offload.write(lambda: store.update_session(TENANT, sid, status="ended"))
            return await reader
        finally:
            world.close()

    assert asyncio.run(scenario()) == [1, 2]


def test_rows_committed_while_the_listener_was_away_are_read_when_it_listens_again(
        store: Store, pg_url: str) -> None:
    sid = new_session(store, "missed-notify")
    store.append_log(TENANT, sid, [], [], events(1, ["session_start"]))

    async def scenario() -> list[int]:
        world = started(store)
        try:
            reader = asyncio.ensure_future(ids_of(world.streams.subscribe(TENANT, sid)))
            listener = world.fanout.listener
            assert listener is not None
            while listener.backend_pid is None:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # the stream waits for a notification
            old = listener.backend_pid
            await world.offload.write(terminate, pg_url, old)
            # It noticed: nothing is heard until it reconnects (0.5 s later). Under load this loop
            # may only look again after the reconnect: a new pid, not None, ends it too.
            while listener.backend_pid == old:
                await asyncio.sleep(0.01)
            await world.append(sid, events(2, ["text_delta", "done"]))  # its NOTIFY is lost
            return await reader
        finally:
            world.close()

    assert asyncio.run(scenario()) == [1, 2, 3]


def test_without_notifications_the_fallback_re_read_still_delivers(store: Store) -> None:
    sid = new_session(store, "no-listener")
    store.append_log(TENANT, sid, [], [], events(1, ["session_start"]))

    async def scenario() -> list[int]:
        world = World(store, StreamFanout(asyncio.get_running_loop(), reread_s=0.2))  # no listener
        try:
            reader = asyncio.ensure_future(ids_of(world.streams.subscribe(TENANT, sid)))
            await asyncio.sleep(0.3)
            await world.append(sid, events(2, ["text_delta", "done"]))
            return await reader
        finally:
            world.close()

    assert asyncio.run(scenario()) == [1, 2, 3]


def test_the_fan_out_wakes_the_waiters_of_the_notified_session_only_and_everyone_on_reconnect() -> None:
    async def scenario() -> None:
        fanout = StreamFanout(asyncio.get_running_loop())
        a, b = fanout.next_rows("a"), fanout.next_rows("b")
        notifier = threading.Thread(target=lambda: [fanout.rows_committed("a", n) for n in range(100)])
        notifier.start()
        notifier.join()
        await asyncio.wait_for(a, DEADLINE_S)
        await asyncio.sleep(0.05)
        assert not b.done()
        fanout.forget("a", a)
        again = fanout.next_rows("a")
        threading.Thread(target=fanout.listening).start()
        await asyncio.wait_for(asyncio.gather(again, b), DEADLINE_S)  # reconnected: everyone re-reads
        fanout.forget("a", again)
        fanout.forget("b", b)

    asyncio.run(scenario())


def terminate(url: str, pid: int) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.select(sa.func.pg_terminate_backend(pid)))
    finally:
        engine.dispose()
