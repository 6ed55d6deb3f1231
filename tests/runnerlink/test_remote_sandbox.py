"""A sandbox on a runner, driven by a coordinator through the runner link: the runner's
SandboxHost (real bridge, real CLI, scripted model, the runner's own launcher) and the
coordinator's RemoteLauncher under the same SandboxActor and BridgeLink standalone uses, over
a real WebSocket on loopback."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pykka
import pytest

from ashd.actors.messages import BridgeExited
from ashd.actors.sandbox import SandboxActor
from ashd.actors.sandbox_host import HostConfig, SandboxHost
from ashd.config import ModelConfig, Secret
from ashd.errors import SandboxFailed
from ashd.layout import Layout
from ashd.runnerlink.endpoint import RunnerEnd, RunnerLinkHandler
from ashd.sandbox.env import sandbox_env
from ashd.sandbox.launch_order import LaunchOrder, Shipped, order_of
from ashd.sandbox.launcher import DirectLauncher, SandboxSpec
from ashd.sandbox.logring import LogBook
from ashd.sandbox.remote import LOST_REASON, RemoteLauncher
from ashd.sandbox.resume import TranscriptRestore
from ashd.scripted.server import ScriptedModel
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
        launcher = RemoteLauncher(loop, lambda runner: link.mux if runner == "r1" else None)
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
            assert psutil.pid_exists(started.pid)

            bridge = await BridgeLink.connect(started.socket_path)
            assert bridge.ready.pid == started.pid and bridge.ready.session_id == spec.session_id
            events = [e async for e in bridge.turn(protocol.Query("[[say: hello from the runner]]"))]
            assert result_of(events)["result"] == "hello from the runner" and isinstance(events[-1], protocol.Done)
            events = [e async for e in bridge.turn(protocol.Query("[[say: second turn]]",
                                                                  include_partial_messages=True))]
            assert any(isinstance(e, protocol.Message) and e.data["type"] == "stream_event" for e in events)
            assert result_of(events)["result"] == "second turn"

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
                while host.count or (psutil.pid_exists(started.pid)
                                     and psutil.Process(started.pid).status() != "zombie"):
                    await asyncio.sleep(0.05)
            assert not spec.socket_path.exists()
            bridge.close()
        finally:
            await link.stop()
            server.stop()
            await host.stop_all()

    asyncio.run(scenario())
    texts = [(line.level, line.text) for line in logs.lines(spec.session_id)]
    assert any(level == "stderr" and text.startswith(f"[bridge] INFO CLI connected; serving session {spec.session_id}")
               for level, text in texts), texts  # the runner forwarded the bridge's stderr
    assert any(level == "system" and "launcher remote" in text for level, text in texts)



def test_a_launch_order_carries_no_host_path_nor_model_key_and_refuses_one(tmp_path: Path) -> None:
    order = order_of(coordinator_spec(tmp_path, "http://model.invalid")).to_json()
    assert str(tmp_path) not in json.dumps(order) and "coordinator-key" not in json.dumps(order)
    assert order["user_env"] == {"GREETING": "hello-from-user"} and order["agent_key"] == "a1.1"
    assert LaunchOrder.from_json(order).settings == order["settings"]
    for bad in ({"cli_path": "/bin/sh"}, {"socket_path": "/tmp/x"}, {"workspace": "/"}):
        with pytest.raises(SandboxFailed, match="settings may only carry"):
            LaunchOrder.from_json({**order, "settings": {**order["settings"], **bad}})
    with pytest.raises(SandboxFailed, match="not a valid id"):
        LaunchOrder.from_json({**order, "agent_key": "../etc"})
