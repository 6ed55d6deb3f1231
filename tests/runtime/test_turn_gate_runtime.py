"""Turns taken through the session actor's gate (ashd/actors/turn_gate.py) with the real actor
tree: a warm, idle session's message asks no ``begin_turn``; two at once, one 409; a turn
offered for an agent process that has died is handed back and asked for.

The launcher seam runs a tiny program instead of the bridge (ready at once, then sleeping).
Nothing listens on the bridge socket, so turns end with ``error`` (not reachable) and ``done``.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ashd.actors.messages import BridgeExited
from ashd.actors.session import SessionActor
from ashd.config import Config, PoolConfig
from ashd.errors import Conflict
from ashd.layout import Layout
from ashd.metrics import Metrics
from ashd.options import MessageOptions, SessionOptions
from ashd.runtime.local import LocalRuntime
from ashd.runtime.offload import Offload
from ashd.sandbox.launcher import SandboxSpec
from ashd.store import AgentRow, Store
from tests.actors.harness import ShellLauncher

TENANT = "t1"
MESSAGE = MessageOptions.from_request({"content": "hi"})


# A bridge that says ready on its socket and then never answers a query: a turn runs until
# it is ended from outside (the watchdog's period is far longer than these tests).
SILENT_BRIDGE = """
import json, os, socket, sys
path = sys.argv[1]
if os.path.exists(path):
    os.unlink(path)
server = socket.socket(socket.AF_UNIX)
server.bind(path)
server.listen()
os.write(1, b"R")
os.close(1)
held = []
while True:
    conn, _ = server.accept()
    conn.sendall(json.dumps({"ev": "ready", "pid": os.getpid(), "sessionId": "s"}).encode() + b"\\n")
    held.append(conn)
"""


class SleeperLauncher(ShellLauncher):
    """A bridge that is ready at once and then sleeps; ``silent``: one that accepts the link and
    never answers (SILENT_BRIDGE: its turns hang)."""

    name = "sleeper"

    def __init__(self) -> None:
        super().__init__("printf R; exec 1>&-; exec sleep 600")
        self.silent = False

    def argv(self, spec: SandboxSpec) -> list[str]:
        return [sys.executable, "-c", SILENT_BRIDGE, str(spec.socket_path)] if self.silent else super().argv(spec)


Running = tuple[LocalRuntime, Store, SleeperLauncher, AgentRow, list[str]]


@pytest.fixture
def running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Running]:
    asked: list[str] = []  # every begin_turn the session actors answered (the seam counted)
    begin_turn = SessionActor.begin_turn

    def counted(self: SessionActor) -> Any:
        asked.append(self._id)
        return begin_turn(self)

    monkeypatch.setattr(SessionActor, "begin_turn", counted)
    config = Config(data_dir=tmp_path / "data", pool=PoolConfig(bridge_ready_timeout_s=30))
    Layout(config.data_dir).create()
    store = Store(config.database_url)
    store.migrate()
    launcher = SleeperLauncher()
    offload = Offload()
    runtime = LocalRuntime.start(config, store, launcher, offload, Metrics())
    agent_dir = tmp_path / "agent"
    agent_dir.mkdir()
    (agent_dir / "CLAUDE.md").write_text("You are a test agent.\n")
    agent = store.upsert_agent(TENANT, "sleeper", str(agent_dir), {})
    yield runtime, store, launcher, agent, asked
    runtime.shutdown()
    offload.shutdown()
    store.close()


async def whole(turn: Any) -> list[bytes]:
    return [data async for _, data in turn.subscribe()]


def test_messages_to_a_warm_idle_session_ask_no_begin_turn(running: Running) -> None:
    rt, _, launcher, agent, asked = running

    async def scenario() -> list[list[bytes]]:
        session = await rt.create(TENANT, agent, SessionOptions(), may_use_prewarmed=False)
        turns = []
        for _ in range(20):  # back to back: each sent as soon as the last one's done is out
            turns.append(await whole(await rt.send(TENANT, session.id, MESSAGE)))
        await rt.end(TENANT, session.id)
        return turns

    turns = asyncio.run(scenario())
    assert all(b"event: done" in frames[-1] for frames in turns)
    assert asked == []  # every turn was taken through the gate
    assert len(launcher.spawned) == 1


def test_two_messages_at_once_to_an_idle_session_one_turn_one_conflict(running: Running) -> None:
    rt, _, _, agent, asked = running

    async def scenario() -> list[Any]:
        session = await rt.create(TENANT, agent, SessionOptions(), may_use_prewarmed=False)
        results = await asyncio.gather(rt.send(TENANT, session.id, MESSAGE), rt.send(TENANT, session.id, MESSAGE),
                                       return_exceptions=True)
        for result in results:
            if not isinstance(result, BaseException):
                await whole(result)
        await rt.end(TENANT, session.id)
        return results

    results = asyncio.run(scenario())
    conflicts = [r for r in results if isinstance(r, Conflict)]
    assert len(conflicts) == 1 and "already running" in conflicts[0].message
    assert len(asked) == 1  # the loser asked, behind the winner's turn


def test_a_turn_offered_for_a_dead_agent_process_is_handed_back_and_a_new_one_started(running: Running) -> None:
    rt, _, launcher, agent, asked = running

    async def scenario() -> tuple[list[bytes], list[bytes]]:
        session = await rt.create(TENANT, agent, SessionOptions(), may_use_prewarmed=False)
        first = await whole(await rt.send(TENANT, session.id, MESSAGE))
        # The agent process's exit is known to the data plane before its actor hears of it:
        # the gate still offers its turn.
        rt._exits.record(launcher.spawned[0], BridgeExited(session.id, session.id, -9, False, "killed"))
        second = await whole(await rt.send(TENANT, session.id, MESSAGE))
        await rt.end(TENANT, session.id)
        return first, second

    first, second = asyncio.run(scenario())
    assert b"event: done" in first[-1] and b"event: done" in second[-1]
    assert len(launcher.spawned) == 2  # the second message started a new agent process
    assert len(asked) >= 1  # ... asked for, after the taken turn was handed back


def test_pause_stop_and_delete_during_a_turn_taken_through_the_gate_are_as_during_an_asked_one(
        running: Running) -> None:
    rt, _, launcher, agent, asked = running
    launcher.silent = True

    async def running_turn(session_id: str) -> Any:
        turn = await rt.send(TENANT, session_id, MESSAGE)
        frames = turn.subscribe()
        first = await anext(frames)  # session_start: the query is with the (silent) agent
        assert b"session_start" in first[1] and not turn.finished
        return turn

    async def scenario() -> tuple[list[bytes], list[bytes], str, str]:
        stopped = await rt.create(TENANT, agent, SessionOptions(), may_use_prewarmed=False)
        turn = await running_turn(stopped.id)
        with pytest.raises(Conflict, match="can be paused"):
            await rt.pause(TENANT, stopped.id)
        row = await rt.stop(TENANT, stopped.id)  # the turn is ended first (its agent killed)
        stop_frames = await whole(turn)
        ended = await rt.create(TENANT, agent, SessionOptions(), may_use_prewarmed=False)
        turn = await running_turn(ended.id)
        end_row = await rt.end(TENANT, ended.id)
        return stop_frames, await whole(turn), row.status, end_row.status

    stop_frames, end_frames, stopped, ended = asyncio.run(scenario())
    assert asked == []  # both turns were taken through the gate
    assert stopped == "stopped" and ended == "ended"
    assert b"stopped during this turn" in b"".join(stop_frames) and b"event: done" in stop_frames[-1]
    assert b"deleted during this turn" in b"".join(end_frames) and b"event: done" in end_frames[-1]
