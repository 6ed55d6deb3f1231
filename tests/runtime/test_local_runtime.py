"""LocalRuntime with fake actors at the seam (a real SQLite store): grants, Pending, event ids,
a grant for a dead agent process, and ending a session in one call."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pykka
import pytest

from ashd.actors.children import ChildRegistry
from ashd.actors.exits import ExitBoard
from ashd.actors.messages import BridgeExited, Pending, TurnGrant
from ashd.actors.supervisor import POOL, SESSIONS, Tree
from ashd.config import Config, PoolConfig
from ashd.errors import Conflict
from ashd.mailbox import IDLE, Idle
from ashd.metrics import Metrics
from ashd.options import MessageOptions
from ashd.runtime.local import LocalRuntime
from ashd.runtime.offload import Offload
from ashd.sandbox.logring import LogBook
from ashd.store import Store
from ashd.wire import protocol

TENANT = "t1"
SID = "00000000-0000-4000-8000-000000000001"


class FakeSession(pykka.ThreadingActor):
    """A session actor's turn gate: grants pids in order, answers Pending ``pending`` times."""

    def __init__(self, socket: Path, pids: list[int], pending: int = 0) -> None:
        super().__init__()
        self.socket, self.pids, self.pending = socket, pids, pending
        self.calls: list[str] = []
        self.busy = False

    def begin_turn(self) -> TurnGrant | Pending:
        self.calls.append("begin_turn")
        if self.pending:
            self.pending -= 1
            until: Future[None] = Future()
            threading.Timer(0.05, until.set_result, [None]).start()
            return Pending(until)
        if self.busy:
            raise Conflict("A turn is already running in this session; wait for its done event")
        self.busy = True
        pid = self.pids.pop(0) if len(self.pids) > 1 else self.pids[0]
        return TurnGrant(TENANT, SID, SID, str(self.socket), pid)

    def end_turn(self) -> None:
        self.calls.append("end_turn")
        self.busy = False

    def end_session(self) -> str:
        self.calls.append("end_session")
        return "ended"

    def recorded(self) -> list[str]:
        return list(self.calls)


class FakeSupervisor(pykka.ThreadingActor):
    def __init__(self, session: pykka.ActorRef[FakeSession]) -> None:
        super().__init__()
        self.session = session
        self.forgotten: list[str] = []

    def child(self, session_id: str, tenant_id: str) -> Any:
        return self.session.proxy()

    def forget(self, session_id: str) -> None:
        self.forgotten.append(session_id)


class CountingStore(Store):
    reads_of_last = 0

    def last_stream_event(self, tenant_id: str, session_id: str) -> Any:
        self.reads_of_last += 1
        return super().last_stream_event(tenant_id, session_id)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CountingStore]:
    store = CountingStore(f"sqlite:///{tmp_path / 'ash.db'}")
    store.migrate()
    store.create_session(tenant_id=TENANT, session_id=SID, agent_name="a", status="active", sandbox_id=SID)
    yield store
    store.close()


def make_runtime(tmp_path: Path, store: Store, session: FakeSession | None = None, *, pids: list[int] | None = None,
                 pending: int = 0) -> tuple[LocalRuntime, pykka.ActorRef[FakeSession], ExitBoard,
                                            pykka.ActorRef[FakeSupervisor]]:
    ref = FakeSession.start(tmp_path / "no-bridge.sock", pids or [100], pending)
    sup = FakeSupervisor.start(ref)
    exits = ExitBoard()
    registry = ChildRegistry()
    registry.put(POOL, sup)
    registry.put(SESSIONS, sup)
    tree = Tree(registry, exits)
    config = Config(data_dir=tmp_path, pool=PoolConfig(sse_heartbeat_s=0.05))
    runtime = LocalRuntime(config, store, Offload(), tree, exits, LogBook(), Metrics())
    return runtime, ref, exits, sup


@pytest.fixture(autouse=True)
def stop_actors() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all(timeout=30)


async def run_turn(runtime: LocalRuntime) -> list[bytes]:
    turn = await runtime.send(TENANT, SID, MessageOptions.from_request({"content": "hi"}))
    frames = [data async for _, data in turn.subscribe()]
    await turn.ended()
    await asyncio.sleep(0)  # the turn task's done callback (the live turn is cleared)
    return frames


def ids(frames: list[bytes]) -> list[int]:
    return [int(f.split(b"\n", 1)[0].removeprefix(b"id: ")) for f in frames]


def test_event_ids_continue_across_turns_from_one_read_of_the_store(tmp_path: Path, store: CountingStore) -> None:
    runtime, ref, _, _ = make_runtime(tmp_path, store)

    async def scenario() -> tuple[list[bytes], list[bytes]]:
        return await run_turn(runtime), await run_turn(runtime)

    first, second = asyncio.run(scenario())
    # No bridge listens: each turn ends with error (not reachable) and done, ids never reused.
    assert b"not reachable" in b"".join(first) and b"event: done" in first[-1]
    assert ids(first) + ids(second) == list(range(1, len(first) + len(second) + 1))
    assert store.reads_of_last == 1
    assert ref.proxy().recorded().get(timeout=5) == ["begin_turn", "end_turn", "begin_turn", "end_turn"]


def test_pending_replies_are_waited_for_and_begin_turn_repeated(tmp_path: Path, store: CountingStore) -> None:
    runtime, ref, _, _ = make_runtime(tmp_path, store, pending=2)
    frames = asyncio.run(run_turn(runtime))
    assert b"event: done" in frames[-1]
    assert ref.proxy().recorded().get(timeout=5) == ["begin_turn"] * 3 + ["end_turn"]


def test_a_grant_for_an_agent_process_known_dead_is_handed_back(tmp_path: Path, store: CountingStore) -> None:
    runtime, ref, exits, _ = make_runtime(tmp_path, store, pids=[111, 222])
    exits.record(111, BridgeExited(SID, SID, -9, False, "killed"))

    async def scenario() -> int:
        turn = await runtime.send(TENANT, SID, MessageOptions.from_request({"content": "hi"}))
        pid = turn._host._grant.pid  # type: ignore[attr-defined]
        await turn.ended()
        return int(pid)

    assert asyncio.run(scenario()) == 222
    assert ref.proxy().recorded().get(timeout=5) == ["begin_turn", "end_turn", "begin_turn", "end_turn"]


def test_a_busy_session_is_a_conflict_and_interrupt_needs_a_turn(tmp_path: Path, store: CountingStore) -> None:
    runtime, _, _, _ = make_runtime(tmp_path, store)

    async def scenario() -> None:
        with pytest.raises(Conflict, match="No turn is running"):
            await runtime.interrupt(TENANT, SID)
        turn = await runtime.send(TENANT, SID, MessageOptions.from_request({"content": "hi"}))
        assert runtime.live_turn(SID) is turn
        with pytest.raises(Conflict, match="already running"):
            await runtime.send(TENANT, SID, MessageOptions.from_request({"content": "again"}))
        await turn.ended()
        await asyncio.sleep(0)
        assert runtime.live_turn(SID) is None

    asyncio.run(scenario())


def test_end_is_one_call_that_lets_everything_go(tmp_path: Path, store: CountingStore) -> None:
    runtime, ref, _, sup = make_runtime(tmp_path, store)

    async def scenario() -> object:
        assert not runtime.holds(TENANT, SID)  # never used: callers read the store
        await run_turn(runtime)
        assert runtime.holds(TENANT, SID) and not runtime.holds("another-tenant", SID)
        ended = await runtime.end(TENANT, SID)
        assert not runtime.holds(TENANT, SID)
        return ended

    assert asyncio.run(scenario()) == "ended"
    assert ref.proxy().recorded().get(timeout=5)[-1] == "end_session"
    assert sup.proxy().forgotten.get(timeout=5) == [SID]


def test_subscribe_replays_after_an_id_then_follows_the_next_turn_until_the_session_ends(
        tmp_path: Path, store: CountingStore) -> None:
    runtime, _, _, _ = make_runtime(tmp_path, store)

    async def scenario() -> tuple[list[bytes | Idle], list[bytes | Idle]]:
        first = await run_turn(runtime)
        replayed = [item async for item in runtime.subscribe(TENANT, SID, after=1)]
        followed: list[bytes | Idle] = []

        async def follow() -> None:
            async for item in runtime.subscribe(TENANT, SID, after=len(first), follow=True):
                followed.append(item)
                if item is IDLE and followed.count(IDLE) == 1:
                    await run_turn(runtime)  # the next turn, while the stream waits between turns
                elif isinstance(item, bytes) and b"event: done" in item:
                    store.update_session(TENANT, SID, status="ended")

        await asyncio.wait_for(follow(), 10)
        return replayed, followed

    replayed, followed = asyncio.run(scenario())
    assert ids([f for f in replayed if isinstance(f, bytes)]) == [2, 3]  # stored after id 1, no live turn: ends
    frames = [f for f in followed if isinstance(f, bytes)]
    assert ids(frames) == [4, 5, 6] and b"event: done" in frames[-1]  # the next turn's, once; then the end


class LoggingStore(CountingStore):
    """Records every group-commit batch (what one transaction held), in order."""

    batches: list[tuple[list[str], list[str]]]

    def append_log(self, tenant_id: str, session_id: str, messages: Any, events: Any, stream: Any = (),
                   **kwargs: Any) -> None:
        super().append_log(tenant_id, session_id, messages, events, stream, **kwargs)
        self.batches.append(([role for role, _ in messages], [event for _, event, _ in stream]))


def test_the_user_message_commits_with_the_first_frame_and_a_message_right_after_done_is_granted(
        tmp_path: Path) -> None:
    store = LoggingStore(f"sqlite:///{tmp_path / 'ash.db'}")
    store.batches = []
    store.migrate()
    store.create_session(tenant_id=TENANT, session_id=SID, agent_name="a", status="active", sandbox_id=SID)
    runtime, ref, _, _ = make_runtime(tmp_path, store)

    async def scenario() -> list[bytes]:
        turn = await runtime.send(TENANT, SID, MessageOptions.from_request({"content": "hi"}))
        frames = [data async for _, data in turn.subscribe()]
        # The very next message after done, with no pause: the release is ahead of it.
        second = await runtime.send(TENANT, SID, MessageOptions.from_request({"content": "again"}))
        await second.ended()
        return frames

    try:
        frames = asyncio.run(scenario())
        assert b"event: done" in frames[-1]
        assert store.batches[0] == (["user"], ["session_start"])  # one transaction, before any delivery
        assert [m.role for m in store.list_messages(TENANT, SID)] == ["user", "user"]
        assert ref.proxy().recorded().get(timeout=5) == ["begin_turn", "end_turn", "begin_turn", "end_turn"]
    finally:
        store.close()


def peek(side: socket.socket) -> bytes:
    """What the bridge can read now (not taken from its socket)."""
    try:
        return side.recv(65536, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return b""


def at_once_runtime(tmp_path: Path, store: Store, sock: Path) -> tuple[LocalRuntime, Offload]:
    """A runtime whose session's bridge listens at ``sock``, committing on the loop as the
    daemon does on SQLite (the store is migrated and holds the session)."""
    store.migrate()
    store.create_session(tenant_id=TENANT, session_id=SID, agent_name="a", status="active", sandbox_id=SID)
    ref = FakeSession.start(sock, [100])
    registry = ChildRegistry()
    registry.put(POOL, FakeSupervisor.start(ref))
    registry.put(SESSIONS, registry.get(POOL))
    exits = ExitBoard()
    offload = Offload()
    offload.allow_writes_at_once(store.checkpoint)
    tree = Tree(registry, exits)
    return LocalRuntime(Config(data_dir=tmp_path), store, offload, tree, exits, LogBook(), Metrics()), offload


def stream_line(event: dict[str, Any]) -> bytes:
    return protocol.encode(protocol.Message({"type": "stream_event", "event": event}))


def test_the_first_text_delta_commits_before_the_lines_read_with_it(tmp_path: Path) -> None:
    """A reply's first lines arrive in one read; its first token is not held back for the
    rest (issue #12): the batch that delivers it ends with it."""
    sock = tmp_path / "bridge.sock"
    store = LoggingStore(f"sqlite:///{tmp_path / 'ash.db'}")
    store.batches = []
    runtime, offload = at_once_runtime(tmp_path, store, sock)
    delivered: list[list[str]] = []  # the events of each batch, as the turn delivered them
    delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "word "}}
    burst = b"".join([stream_line({"type": "message_start", "message": {}}),
                      stream_line({"type": "content_block_start", "index": 0, "content_block": {"type": "text"}}),
                      *[stream_line(delta)] * 5, protocol.encode(protocol.Done(SID))])

    closed = threading.Event()

    async def bridge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(protocol.encode(protocol.Ready(100, SID)))
        while await reader.readline():  # a query: the whole reply in one write
            writer.write(burst)
        writer.close()
        closed.set()

    async def scenario() -> None:
        server = await asyncio.start_unix_server(bridge, str(sock))
        try:
            turn = await runtime.send(TENANT, SID, MessageOptions.from_request({"content": "hi"}))
            async for _, data in turn.subscribe(batched=True):
                delivered.append([line.removeprefix(b"event: ").decode() for line in data.split(b"\n")
                                  if line.startswith(b"event: ")])
            await turn.ended()
        finally:
            runtime.shutdown()  # closes the link: the bridge sees its end
            for _ in range(100):
                if closed.is_set():
                    break
                await asyncio.sleep(0.01)
            server.close()
            await server.wait_closed()

    try:
        asyncio.run(scenario())
        first = next(i for i, events in enumerate(delivered) if "text_delta" in events)
        assert delivered[first].count("text_delta") == 1, delivered  # it went out alone ...
        assert sum(events.count("text_delta") for events in delivered) == 5  # ... and the rest after it
    finally:
        offload.shutdown()
        store.close()


def test_a_warm_turns_query_is_written_before_send_returns_and_before_its_first_rows_commit(tmp_path: Path) -> None:
    """The agent starts on the query in the request's own step of the loop, and while the user
    message commits, not after (issue #12)."""
    sock = tmp_path / "bridge.sock"
    seen_at_commit: list[bytes] = []
    seen_at_send: list[bytes] = []
    bridge_side: list[socket.socket] = []
    writers: list[asyncio.StreamWriter] = []
    armed = threading.Event()  # the link is up (the first turn connected it)

    class PeekingStore(Store):
        def append_log_at_once(self, *args: Any, **kwargs: Any) -> bool:
            if armed.is_set() and not seen_at_commit:  # what the bridge can read when the turn's first rows commit
                seen_at_commit.append(peek(bridge_side[0]))
            return super().append_log_at_once(*args, **kwargs)

    store = PeekingStore(f"sqlite:///{tmp_path / 'ash.db'}")
    runtime, offload = at_once_runtime(tmp_path, store, sock)

    async def bridge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        bridge_side.append(socket.socket(fileno=os.dup(writer.get_extra_info("socket").fileno())))
        writer.write(protocol.encode(protocol.Ready(100, SID)))
        while await reader.readline():  # a query
            writer.write(protocol.encode(protocol.Done(SID)))
            await writer.drain()

    async def scenario() -> None:
        server = await asyncio.start_unix_server(bridge, str(sock))
        try:
            for _ in range(2):
                turn = await runtime.send(TENANT, SID, MessageOptions.from_request({"content": "hi"}))
                if armed.is_set():  # the link is up: no step of the loop has run since send
                    seen_at_send.append(peek(bridge_side[0]))
                [_ async for _ in turn.subscribe()]
                await turn.ended()
                await asyncio.sleep(0.05)  # the grant goes back to the actor
                armed.set()
        finally:
            runtime.shutdown()  # closes the bridge link
            for writer in writers:
                writer.close()
            server.close()
            await server.wait_closed()

    try:
        asyncio.run(scenario())
        assert b'"cmd":"query"' in seen_at_commit[0], seen_at_commit
        assert b'"cmd":"query"' in seen_at_send[0], seen_at_send
    finally:
        for side in bridge_side:
            side.close()
        offload.shutdown()
        store.close()


def test_a_batched_subscription_carries_the_same_frames_in_fewer_writes(tmp_path: Path, store: CountingStore) -> None:
    runtime, _, _, _ = make_runtime(tmp_path, store)

    async def scenario() -> tuple[list[bytes | Idle], list[bytes | Idle]]:
        await run_turn(runtime)
        await run_turn(runtime)
        single = [item async for item in runtime.subscribe(TENANT, SID, after=1)]
        batched = [item async for item in runtime.subscribe(TENANT, SID, after=1, batched=True)]
        return single, batched

    single, batched = asyncio.run(scenario())
    assert len(single) > 1 and len(batched) == 1  # one replay page
    assert b"".join(f for f in batched if isinstance(f, bytes)) == b"".join(f for f in single if isinstance(f, bytes))


def test_full_replay_pages_are_encoded_once_and_shared() -> None:
    from ashd.runtime.streams import PageCache

    cache = PageCache(limit_bytes=10)
    cache.put(("t", "s", 0), ([(1, b"12345")], b"12345"))
    cache.put(("t", "s", 1), ([(2, b"123456")], b"123456"))  # over the limit: the oldest goes
    assert cache.get(("t", "s", 0)) is None and cache.get(("t", "s", 1)) is not None
    assert cache.get(("u", "s", 1)) is None  # per tenant


class RestartingSupervisor(FakeSupervisor):
    """Starts a new session actor when the last one stopped (as the real one does); counts asks."""

    asks = 0

    def child(self, session_id: str, tenant_id: str) -> Any:
        self.asks += 1
        if not self.session.is_alive():
            self.session = FakeSession.start(Path("/nonexistent.sock"), [100])
        return self.session.proxy()

    def count(self) -> int:
        return self.asks


def test_turns_ask_the_kept_session_actor_and_a_retired_one_is_replaced(tmp_path: Path, store: CountingStore) -> None:
    runtime, ref, _, _ = make_runtime(tmp_path, store)
    sup = RestartingSupervisor.start(ref)
    runtime._tree.registry.put(SESSIONS, sup)

    async def scenario() -> list[list[bytes]]:
        turns = [await run_turn(runtime), await run_turn(runtime)]
        ref.stop()  # the session actor retired while idle
        turns.append(await run_turn(runtime))
        return turns

    turns = asyncio.run(scenario())
    assert all(b"event: done" in frames[-1] for frames in turns)
    assert sup.proxy().count().get(timeout=5) == 2  # the first turn, and after the retirement
