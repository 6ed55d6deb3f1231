"""The real bridge process, real CLI and scripted model, driven over its unix socket."""

from __future__ import annotations

import asyncio
import os
import select
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ashd.sandbox import logpump
from ashd.sandbox.env import sandbox_env
from ashd.sandbox.launcher import DirectLauncher, SandboxSpec
from ashd.sandbox.logring import LogRing
from ashd.sandbox.zygote import BridgeProcess, BridgeZygote
from ashd.scripted.server import ScriptedModel
from ashd.wire import protocol
from ashd.wire.link import BridgeLink
from ashd.wire.settings import BridgeSettings

SOCKETS: list[Path] = []  # made by make_spec in /tmp: a killed bridge leaves its socket


@pytest.fixture(autouse=True)
def made_sockets() -> Iterator[None]:
    yield
    while SOCKETS:
        SOCKETS.pop().unlink(missing_ok=True)


def make_spec(tmp_path: Path, model_url: str) -> SandboxSpec:
    sid = str(uuid.uuid4())
    root = tmp_path / "sb"
    (root / "workspace").mkdir(parents=True)
    (root / "workspace" / "CLAUDE.md").write_text("You are a test agent.")
    sock = Path(f"/tmp/ashd-test-{sid[:8]}.sock")  # short enough for a socket name; removed by made_sockets
    SOCKETS.append(sock)
    env = sandbox_env(home=str(root / "home"), model_base_url=model_url, model_key="k", model_auth_token="",
                      user_env={})
    settings = BridgeSettings(session_id=sid, socket_path=str(sock), workspace=str(root / "workspace"),
                              system_prompt="You are a test agent.")
    return SandboxSpec(sid, sid, "a", "t", root, sock, env, settings)


def wait_ready(proc: BridgeProcess, timeout: float = 30) -> bytes:
    assert proc.stdout is not None
    readable, _, _ = select.select([proc.stdout], [], [], timeout)
    return os.read(proc.stdout.fileno(), 1) if readable else b""


@pytest.fixture(scope="module")
def zygote() -> Iterator[BridgeZygote]:
    started = BridgeZygote().start()
    assert started.running
    yield started
    started.close()


@pytest.fixture(params=["popen", "zygote"])
def bridge(request: pytest.FixtureRequest, tmp_path: Path,
           scripted_model: ScriptedModel) -> Iterator[tuple[SandboxSpec, BridgeProcess]]:
    """The same bridge as a plain process and forked by the zygote."""
    spec = make_spec(tmp_path, scripted_model.base_url)
    launcher = DirectLauncher(request.getfixturevalue("zygote") if request.param == "zygote" else None)
    proc = launcher.spawn(spec)
    assert proc.stderr is not None
    logpump.start(proc.stderr, spec.log_path, LogRing(), "test-pump")  # as the sandbox actor does
    try:
        assert wait_ready(proc) == protocol.READY_BYTE, spec.log_path.read_text()
        yield spec, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout:
            proc.stdout.close()


async def collect(link: BridgeLink, query: protocol.Query) -> list[protocol.Event]:
    return [event async for event in link.turn(query)]


def test_handshake_turns_interrupt_and_shutdown(bridge: tuple[SandboxSpec, BridgeProcess]) -> None:
    spec, proc = bridge

    async def scenario() -> None:
        link = await BridgeLink.connect(str(spec.socket_path))
        assert link.ready.session_id == spec.session_id and link.ready.pid == proc.pid

        events = await collect(link, protocol.Query("[[say: one two three]]", include_partial_messages=False))
        kinds = [e.data["type"] for e in events if isinstance(e, protocol.Message)]
        assert "stream_event" not in kinds  # not asked for
        assert kinds[-1] == "result" and isinstance(events[-1], protocol.Done)

        events = await collect(link, protocol.Query("[[say: four five six]]", include_partial_messages=True))
        assert "stream_event" in [e.data["type"] for e in events if isinstance(e, protocol.Message)]

        # Interrupt a slow turn: it ends as interrupted and the next turn works.
        got: list[protocol.Event] = []
        slow = " ".join(f"w{i}" for i in range(300))
        async for event in link.turn(protocol.Query(f"[[slow: 20]] [[say: {slow}]]", include_partial_messages=True)):
            got.append(event)
            if len(got) == 8:
                await link.interrupt()
        result = next(e.data for e in got if isinstance(e, protocol.Message) and e.data["type"] == "result")
        assert result["subtype"] == "error_during_execution" and result["is_error"]
        events = await collect(link, protocol.Query("[[say: after interrupt]]"))
        result = next(e.data for e in events if isinstance(e, protocol.Message) and e.data["type"] == "result")
        assert result["result"] == "after interrupt"

        # A broken frame drops only that connection; a new one is served.
        reader, writer = await asyncio.open_unix_connection(str(spec.socket_path))
        await reader.readline()
        writer.write(b'{"cmd": "format-disk"}\n')
        await writer.drain()
        assert await reader.readline() == b""
        writer.close()
        await writer.wait_closed()
        link.close()
        link = await BridgeLink.connect(str(spec.socket_path))
        await link.shutdown()
        await link.wait_closed()

    asyncio.run(scenario())
    assert proc.wait(timeout=20) == 0
    assert not spec.socket_path.exists()
    assert "[cli]" in spec.log_path.read_text() or spec.log_path.exists()


def test_bad_settings_exit_2(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    proc = subprocess.run([*DirectLauncher().argv_for(tmp_path / "bad.json")], capture_output=True, timeout=30)
    assert proc.returncode == 2 and b"cannot read settings" in proc.stderr
