"""A sandbox on a runner, driven by a coordinator through the runner link: the runner's
SandboxHost (real bridge, real CLI, scripted model, the runner's own launcher) and the
coordinator's RemoteLauncher under the same SandboxActor and BridgeLink standalone uses, over
a real WebSocket on loopback."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pykka
import pytest

from ashd.actors.exits import ExitBoard
from ashd.actors.messages import BridgeExited
from ashd.actors.sandbox import SandboxActor
from ashd.actors.sandbox_host import HostConfig, SandboxHost
from ashd.config import ModelConfig, Secret
from ashd.errors import InsufficientStorage, SandboxFailed, Unavailable
from ashd.layout import Layout
from ashd.metrics import Metrics
from ashd.proxy.meter import Usage
from ashd.runnerlink.endpoint import RunnerEnd, RunnerLinkHandler
from ashd.runnerlink.mux import RequestFailed
from ashd.sandbox.admission import DiskLedger
from ashd.sandbox.env import sandbox_env
from ashd.sandbox.launch_order import LaunchOrder, RunnerPlaces, Shipped, order_of, spec_of
from ashd.sandbox.launcher import DirectLauncher, SandboxSpec
from ashd.sandbox.linked_admission import LinkedAdmission
from ashd.sandbox.logring import LogBook
from ashd.sandbox.recorder import Recorder
from ashd.sandbox.remote import HANDLE_BASE, LOST_REASON, RemoteLauncher
from ashd.sandbox.remote_process import RemoteProcess
from ashd.sandbox.resume import TranscriptRestore
from ashd.sandbox.runner_reports import usage_of
from ashd.scripted.server import ScriptedModel
from ashd.store import Store
from ashd.store.usage import UsageFilter
from ashd.wire import protocol
from ashd.wire.link import LOST, BridgeLink
from ashd.wire.settings import BridgeSettings
from tests.runnerlink.loopback import SECRET, Watch, client, listen


@pytest.fixture(autouse=True)
def stop_actors() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all(timeout=30)


def coordinator_spec(tmp_path: Path, model_url: str) -> SandboxSpec:
    agent = tmp_path / "agent"
    agent.mkdir(exist_ok=True)
    (agent / "CLAUDE.md").write_text("You are a remote test agent.")
    (agent / "notes.txt").write_text("from the agent folder\n")
    sid = str(uuid.uuid4())
    root = tmp_path / "coordinator" / sid
    root.mkdir(parents=True)
    sock = Path(f"/tmp/ashd-c-{sid[:8]}.sock")
    env = sandbox_env(home=str(root / "home"), model_base_url="http://coordinator.invalid",
                      model_key="coordinator-key", model_auth_token="", user_env={"GREETING": "hello-from-user"})
    settings = BridgeSettings(session_id=sid, socket_path=str(sock), workspace=str(root / "workspace"),
                              system_prompt="You are a remote test agent.")
    restore = TranscriptRestore(Shipped({}), "t", sid, None, str(root / "workspace"))
    return SandboxSpec(sid, sid, "agent", "t", root, sock, env, settings, agent_dir=agent, agent_key="a1.1",
                       runner_id="r1", restore_transcript=restore)


def result_of(events: list[protocol.Event]) -> dict[str, object]:
    return next(e.data for e in events if isinstance(e, protocol.Message) and e.data["type"] == "result")


def test_a_sandbox_on_a_runner_streams_turns_and_dies_with_its_link(tmp_path: Path,
                                                                    scripted_model: ScriptedModel) -> None:
    exits: list[BridgeExited] = []
    exited = threading.Event()
    logs = LogBook()
    spec = coordinator_spec(tmp_path, scripted_model.base_url)
    runner_layout = Layout(tmp_path / "runner")
    runner_layout.create()
    open_links: list[RunnerLinkHandler] = []
    store = Store(f"sqlite:///{tmp_path / 'coordinator.db'}")  # the coordinator's database
    store.migrate()
    store.create_session("t", spec.session_id, "agent", "active", spec.sandbox_id, runner_id="r1")
    notices: list[tuple[str, str, dict[str, object]]] = []
    recorder = Recorder(store, lambda tenant, session, payload: notices.append((tenant, session, payload)), Metrics())

    class Tracked(RunnerLinkHandler):
        async def open(self, *args: str, **kwargs: str) -> None:
            open_links.append(self)
            await super().open(*args, **kwargs)

    def on_exit(fact: BridgeExited) -> None:
        exits.append(fact)
        exited.set()

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        host = SandboxHost(HostConfig(runner_layout, DirectLauncher(),
                                      ModelConfig(scripted_model.base_url, Secret("runner-key"))), loop)
        server, port = listen(RunnerEnd(SECRET, "r1", host.serve, on_lost=host.link_lost), handler=Tracked)
        launcher_box: list[RemoteLauncher] = []
        link = client(port, lambda mux: launcher_box[0].serve(mux), watch=Watch())
        launcher = RemoteLauncher(loop, lambda runner: link.mux if runner == "r1" else None, recorder=recorder)
        launcher_box.append(launcher)
        link.start()
        try:
            await link.wait_up(30)
            actor = SandboxActor.start(spec, launcher, on_exit, 120.0, 2.0, logs=logs)
            started = await loop.run_in_executor(None, lambda: actor.proxy().start_bridge().get(timeout=180))
            assert host.count == 1
            runner_root = runner_layout.sandbox_dir(spec.sandbox_id)
            assert (tmp_path / "runner" / "agent-cache" / "a1.1" / "CLAUDE.md").exists()  # shipped by version
            assert (runner_root / "workspace" / "notes.txt").read_text() == "from the agent folder\n"
            # The coordinator's number for the process is its own, never the runner's pid
            # (runners' pids collide; the exit board keys by this number).
            runner_pid = launcher.runner_pid(spec.sandbox_id)
            assert runner_pid and started.pid >= HANDLE_BASE and psutil.pid_exists(runner_pid)

            bridge = await BridgeLink.connect(started.socket_path)
            assert bridge.ready.pid == runner_pid and bridge.ready.session_id == spec.session_id
            events = [e async for e in bridge.turn(protocol.Query("[[say: hello from the runner]]"))]
            assert result_of(events)["result"] == "hello from the runner" and isinstance(events[-1], protocol.Done)
            events = [e async for e in bridge.turn(protocol.Query("[[say: second turn]]",
                                                                  include_partial_messages=True))]
            assert any(isinstance(e, protocol.Message) and e.data["type"] == "stream_event" for e in events)
            assert result_of(events)["result"] == "second turn"

            # What the runner's sandbox services meter or notice for a linked sandbox goes up
            # the link and lands in the coordinator's database as the session's; the runner's
            # own sessions stay local; a runner's report for a sandbox the coordinator did not
            # launch there is ignored.
            used = Usage("claude-sonnet-4-5", 1200, 300, 0, 0, 1)
            assert host.divert(spec.session_id, "usage", dataclasses.asdict(used))
            oom = {"type": "sandbox_oom", "message": "out of memory", "limitMb": 512, "oomKills": 1}
            assert host.divert(spec.session_id, "notice", oom)
            assert not host.divert("a-session-of-the-runner-itself", "usage", dataclasses.asdict(used))
            handle = launcher.serve(link.mux)
            for foreign in ({"op": "usage", "sandbox": "someone-elses", "body": dataclasses.asdict(used)},
                            {"op": "notice", "sandbox": "someone-elses", "body": oom}):
                await handle(link.mux, foreign)
            mine = UsageFilter("t", spec.session_id)
            def oom_events() -> list[dict[str, object]]:
                return [json.loads(e.data) for e in store.list_events("t", spec.session_id, type="lifecycle")]

            async with asyncio.timeout(30):
                while store.usage_stats(mine)["totalMessages"] < 1 or not oom_events():
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)  # anything more (the foreign reports) would have landed too
            stats = store.usage_stats(mine)
            assert (stats["totalMessages"], stats["totalInputTokens"], stats["totalOutputTokens"]) == (1, 1200, 300)
            assert stats["totalCostUsd"] == pytest.approx(used.cost_usd)
            assert [r["sessionId"] for r in store.list_usage(UsageFilter("t"))] == [spec.session_id] * 7
            assert notices == [("t", spec.session_id, oom)]  # the running turn's notice
            assert [e["type"] for e in oom_events()] == ["sandbox_oom"]  # the session's event, as standalone

            # The user's variables reach the sandbox; the coordinator's model key never does.
            out = await bridge.exec('printf "%s|%s" "$GREETING" "$ANTHROPIC_API_KEY"', 10_000)
            assert out.stdout == "hello-from-user|runner-key"
            assert "coordinator-key" not in (runner_root / "bridge.json").read_text()

            # The runner vanishes mid-turn: the turn ends with error + done, the sandbox is
            # lost on the coordinator and stopped on the runner.
            got: list[protocol.Event] = []
            slow = " ".join(f"w{i}" for i in range(400))
            async for event in bridge.turn(protocol.Query(f"[[slow: 50]] [[say: {slow}]]",
                                                          include_partial_messages=True)):
                got.append(event)
                if len(got) == 3:
                    server.stop()
                    for handler in open_links:
                        handler.close()
            assert got[-2] == protocol.Error(LOST) and isinstance(got[-1], protocol.Done)
            assert await loop.run_in_executor(None, exited.wait, 30)
            assert exits[0].returncode == -9 and not exits[0].expected and exits[0].reason == LOST_REASON
            async with asyncio.timeout(30):
                while host.count or (psutil.pid_exists(runner_pid)
                                     and psutil.Process(runner_pid).status() != "zombie"):
                    await asyncio.sleep(0.05)
            assert not spec.socket_path.exists()
            bridge.close()
        finally:
            await link.stop()
            server.stop()
            await host.stop_all()
            recorder.close()
            store.close()

    asyncio.run(scenario())
    texts = [(line.level, line.text) for line in logs.lines(spec.session_id)]
    assert any(level == "stderr" and text.startswith("[bridge] INFO CLI connected")  # the runner forwarded the stderr
               and f"serving session {spec.session_id}" in text for level, text in texts), texts
    assert any(level == "system" and "launcher remote" in text for level, text in texts)


def test_a_runner_admits_linked_sandboxes_to_its_capacity_and_disk_and_removes_an_ended_ones_folder(
        tmp_path: Path, scripted_model: ScriptedModel) -> None:
    """A runner full of linked sandboxes answers the coordinator's launch with a 503 the
    client gets; a workspace image its disk cannot promise, a 507; both leave nothing behind.
    ``discard`` (the session ended) removes a stopped sandbox's folder on the runner, never a
    running one's."""
    first, second = coordinator_spec(tmp_path, scripted_model.base_url), coordinator_spec(tmp_path, "")
    huge = dataclasses.replace(coordinator_spec(tmp_path, ""), policy=dataclasses.replace(
        first.policy, limits=dataclasses.replace(first.policy.limits, disk_mb=1 << 30)))
    runner_layout = Layout(tmp_path / "runner")
    runner_layout.create()
    runner_store = Store(f"sqlite:///{tmp_path / 'runner.db'}")  # a runner's own (empty) store
    runner_store.migrate()
    ledger = DiskLedger(runner_layout, runner_store, reserve_mb=1, reserve_percent=0.0)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        host = SandboxHost(HostConfig(runner_layout, DirectLauncher(),
                                      ModelConfig(scripted_model.base_url, Secret("runner-key")),
                                      admission=LinkedAdmission(1, ledger, 64)), loop)
        server, port = listen(RunnerEnd(SECRET, "r1", host.serve, on_lost=host.link_lost))
        box: list[RemoteLauncher] = []
        link = client(port, lambda mux: box[0].serve(mux), watch=Watch())
        launcher = RemoteLauncher(loop, lambda runner: link.mux if runner == "r1" else None)
        box.append(launcher)
        link.start()

        def spawn(spec: SandboxSpec) -> RemoteProcess:
            return launcher.spawn(spec)

        try:
            await link.wait_up(30)
            with pytest.raises(InsufficientStorage, match="runner r1: Not enough disk"):
                await loop.run_in_executor(None, spawn, huge)
            assert host.count == 0 and not runner_layout.sandbox_dir(huge.sandbox_id).exists()
            proc = await loop.run_in_executor(None, spawn, first)
            assert host.count == 1
            with pytest.raises(Unavailable, match="runner r1: runner is full") as full:
                await loop.run_in_executor(None, spawn, second)
            assert full.value.status == 503 and full.value.retry_after_s == 5 and host.count == 1
            assert not runner_layout.sandbox_dir(second.sandbox_id).exists()

            folder = runner_layout.sandbox_dir(first.sandbox_id)
            with pytest.raises(RequestFailed, match="is running on this runner"):
                await link.mux.request("discard", sandbox=first.sandbox_id)
            with pytest.raises(RequestFailed, match="not a valid id"):
                await link.mux.request("discard", sandbox="../agent-cache")
            await loop.run_in_executor(None, proc.stop_group, 2.0)
            proc.close_pipes()
            assert folder.is_dir() and host.count == 0  # a stopped session may resume into it
            await loop.run_in_executor(None, launcher.discard, first.sandbox_id)
            assert not folder.exists() and (tmp_path / "runner" / "agent-cache" / "a1.1").is_dir()
            launcher.cleanup(first)
        finally:
            await link.stop()
            server.stop()
            await host.stop_all()
            runner_store.close()

    asyncio.run(scenario())


def test_a_launch_order_carries_no_host_path_nor_model_key_and_refuses_one(tmp_path: Path) -> None:
    order = order_of(coordinator_spec(tmp_path, "http://model.invalid")).to_json()
    assert str(tmp_path) not in json.dumps(order) and "coordinator-key" not in json.dumps(order)
    assert order["user_env"] == {"GREETING": "hello-from-user"} and order["agent_key"] == "a1.1"
    assert LaunchOrder.from_json(order).settings == order["settings"]
    for wrong in (-1, "1", True):
        with pytest.raises(SandboxFailed, match="spent_usd"):
            LaunchOrder.from_json({**order, "spent_usd": wrong})
    for bad in ({"cli_path": "/bin/sh"}, {"socket_path": "/tmp/x"}, {"workspace": "/"}):
        with pytest.raises(SandboxFailed, match="settings may only carry"):
            LaunchOrder.from_json({**order, "settings": {**order["settings"], **bad}})
    with pytest.raises(SandboxFailed, match="not a valid id"):
        LaunchOrder.from_json({**order, "agent_key": "../etc"})
    assert order["fresh"] is False and LaunchOrder.from_json({**order, "fresh": True}).fresh is True
    with pytest.raises(SandboxFailed, match="fresh must be true or false"):
        LaunchOrder.from_json({**order, "fresh": "yes"})


def test_the_spend_so_far_rides_the_order_to_the_runners_model_proxy(tmp_path: Path) -> None:
    spec = coordinator_spec(tmp_path, "http://model.invalid")
    order = LaunchOrder.from_json(json.loads(json.dumps(order_of(spec, 1.25).to_json())))
    places = RunnerPlaces(tmp_path / "r", tmp_path / "r.sock", tmp_path / "agent", "http://model.invalid", "k", "")
    assert spec_of(order, places).spent_usd == 1.25  # the isolating launcher seeds the gate with it


def test_a_runners_usage_record_is_checked_and_priced_here() -> None:
    used = Usage("claude-sonnet-4-5", 10, 5, 1, 2, 0)
    assert usage_of(dataclasses.asdict(used)) == used
    assert usage_of({**dataclasses.asdict(used), "cost_usd": 999}) == used  # the cost is never taken
    for bad in (None, [], {"input_tokens": 1}, {**dataclasses.asdict(used), "input_tokens": -1},
                {**dataclasses.asdict(used), "output_tokens": "5"}, {**dataclasses.asdict(used), "tool_calls": True}):
        assert usage_of(bad) is None, bad


def test_remote_processes_get_numbers_of_their_own_though_runners_pids_collide(tmp_path: Path) -> None:
    """Two runners (or one restarted) report the same pid for different bridges; the
    coordinator's exit board must not take one's exit for the other's."""

    class SamePid:
        closed = False

        def on_close(self, callback: object) -> None:
            pass

        async def request(self, op: str, **body: object) -> dict[str, object]:
            assert op == "launch"
            return {"pid": 4242}

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        link = SamePid()
        launcher = RemoteLauncher(loop, lambda runner: link)  # type: ignore[arg-type,return-value]
        specs = [dataclasses.replace(coordinator_spec(tmp_path, "http://model.invalid"), runner_id=r)
                 for r in ("r1", "r2")]
        procs: list[RemoteProcess] = []
        try:
            procs += [await loop.run_in_executor(None, launcher.spawn, spec) for spec in specs]
            assert [launcher.runner_pid(spec.sandbox_id) for spec in specs] == [4242, 4242]
            assert procs[0].pid != procs[1].pid and min(p.pid for p in procs) >= HANDLE_BASE
            board = ExitBoard()
            board.record(procs[0].pid, BridgeExited(specs[0].sandbox_id, specs[0].session_id, -9, False))
            assert board.get(procs[1].pid) is None  # the other runner's bridge still lives
        finally:
            for proc in procs:
                proc.exited(-9, None)
                proc.close_pipes()
            for spec in specs:
                await loop.run_in_executor(None, launcher.cleanup, spec)


class FixedLease:
    """A coordinator's session leases, reduced to the generation it holds (tests set it)."""

    def __init__(self, generation: int) -> None:
        self.generation_now = generation
        self.released: list[str] = []

    def hold(self, session_id: str) -> tuple[int, bool]:
        return self.generation_now, False

    def release(self, session_id: str) -> bool:
        self.released.append(session_id)
        return True


def test_a_released_sandbox_is_adopted_warm_by_a_newer_lease_and_fenced_from_older_ones(
        tmp_path: Path, scripted_model: ScriptedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    from ashd.actors import sandbox_host
    monkeypatch.setattr(sandbox_host, "RELEASE_GRACE_S", 1.0)
    spec_a = coordinator_spec(tmp_path, scripted_model.base_url)
    sid = spec_a.session_id
    sock_b = Path(f"/tmp/ashd-b-{sid[:8]}.sock")
    spec_b = dataclasses.replace(spec_a, socket_path=sock_b, root=tmp_path / "coordinator-b",
                                 settings=dataclasses.replace(spec_a.settings, socket_path=str(sock_b)))
    spec_b.root.mkdir(parents=True)
    runner_layout = Layout(tmp_path / "runner")
    runner_layout.create()
    exits: list[BridgeExited] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        host = SandboxHost(HostConfig(runner_layout, DirectLauncher(),
                                      ModelConfig(scripted_model.base_url, Secret("runner-key"))), loop)
        server, port = listen(RunnerEnd(SECRET, "r1", host.serve, on_lost=host.link_lost))
        lease_a, lease_b = FixedLease(1), FixedLease(2)
        launchers: dict[str, RemoteLauncher] = {}
        link_a = client(port, lambda mux: launchers["a"].serve(mux))
        link_b = client(port, lambda mux: launchers["b"].serve(mux))
        launchers["a"] = RemoteLauncher(loop, lambda runner: link_a.mux, leases=lease_a)  # type: ignore[arg-type]
        launchers["b"] = RemoteLauncher(loop, lambda runner: link_b.mux, leases=lease_b)  # type: ignore[arg-type]
        link_a.start()
        link_b.start()

        async def start(spec: SandboxSpec, who: str) -> tuple[pykka.ActorProxy[SandboxActor], int]:
            actor = SandboxActor.start(spec, launchers[who], exits.append, 120.0, 2.0).proxy()
            await loop.run_in_executor(None, lambda: actor.start_bridge().get(timeout=180))
            runner_pid = launchers[who].runner_pid(spec.sandbox_id)  # the bridge's pid on the runner
            assert runner_pid is not None
            return actor, runner_pid

        async def say(spec: SandboxSpec, prompt: str) -> str:
            bridge = await BridgeLink.connect(spec.socket_path)
            try:
                return str(result_of([e async for e in bridge.turn(protocol.Query(prompt))])["result"])
            finally:
                bridge.close()

        try:
            await link_a.wait_up(30)
            await link_b.wait_up(30)
            actor_a, pid = await start(spec_a, "a")
            assert await say(spec_a, "[[say: one]]") == "one"

            # A hands over: the bridge lives on, nobody's; A's lease is given up, no crash.
            assert await loop.run_in_executor(None, lambda: actor_a.detach_bridge().get(timeout=60))
            assert lease_a.released == [sid] and psutil.pid_exists(pid) and host.count == 1
            assert exits[-1].expected and exits[-1].returncode == 0

            # A's order under its old lease is refused: it is not the owner's any more.
            with pytest.raises(SandboxFailed, match="not newer"):
                await start(spec_a, "a")
            # ... then B (a newer lease) adopts the same process: warm, the conversation in the CLI.
            actor_b, adopted = await start(spec_b, "b")
            assert adopted == pid
            assert await say(spec_b, "[[echo-history]] two") == "history: [[say: one]] | [[echo-history]] two"
            with pytest.raises(RequestFailed):  # only the owning link may stop it
                assert link_a.mux is not None
                await link_a.mux.request("stop", sandbox=sid, grace_s=0)
            assert psutil.pid_exists(pid)

            # Released again, and wanted with another configuration (configured meanwhile): the
            # runner stops the released sandbox and starts a new one, not the old CLI.
            assert await loop.run_in_executor(None, lambda: actor_b.detach_bridge().get(timeout=60))
            lease_a.generation_now = 3
            changed = dataclasses.replace(spec_a, env={**spec_a.env, "GREETING": "configured-anew"})
            actor_a, fresh = await start(changed, "a")
            assert fresh != pid and (not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie")
            bridge = await BridgeLink.connect(changed.socket_path)
            try:  # a new process with the new configuration, resuming the conversation (cold)
                assert (await bridge.exec('printf "%s" "$GREETING"', 10_000)).stdout == "configured-anew"
            finally:
                bridge.close()
            assert await say(changed, "[[echo-history]] three") == \
                "history: [[say: one]] | [[echo-history]] two | [[echo-history]] three"

            # Released, and adopted by no one within the grace: the runner stops it.
            assert await loop.run_in_executor(None, lambda: actor_a.detach_bridge().get(timeout=60))
            async with asyncio.timeout(30):
                while host.count or (psutil.pid_exists(fresh) and psutil.Process(fresh).status() != "zombie"):
                    await asyncio.sleep(0.05)
        finally:
            await link_a.stop()
            await link_b.stop()
            server.stop()
            await host.stop_all()

    asyncio.run(scenario())
