"""Ask-timeout compensation with the real actor tree: a sandbox that becomes ready after the
caller gave up must not leave its session busy (every later message a 409).

The launcher seam runs a tiny program instead of the bridge; it writes the ready byte after
``delay`` seconds. Nothing listens on the bridge socket, so turns end with ``error`` (not
reachable) and ``done``; what matters here is that the session grants the next turn.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ashd.config import Config, PoolConfig
from ashd.errors import Unavailable
from ashd.layout import Layout
from ashd.metrics import Metrics
from ashd.options import MessageOptions, SessionOptions
from ashd.runtime.local import LocalRuntime
from ashd.runtime.offload import Offload
from ashd.sandbox.launcher import SandboxSpec
from ashd.store import Store

TENANT = "t1"
CALLER_TIMEOUT_S = 3.0
SLOW_READY_S = 6.0  # past the caller's timeout, well within the sandbox's own ready timeout


class SlowReadyLauncher:
    name = "slow-ready"

    def __init__(self) -> None:
        self.delay = 0.0

    def spawn(self, spec: SandboxSpec) -> subprocess.Popen[bytes]:
        code = f"import os,time; time.sleep({self.delay}); os.write(1,b'R'); os.close(1); time.sleep(600)"
        with open(spec.log_path, "ab") as log:
            return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=log,
                                    stdin=subprocess.DEVNULL, start_new_session=True)

    def exit_reason(self, spec: SandboxSpec, returncode: int) -> str | None:
        return None

    def cleanup(self, spec: SandboxSpec) -> None:
        pass


Running = tuple[LocalRuntime, Store, SlowReadyLauncher]


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Running]:
    config = Config(data_dir=tmp_path / "data", pool=PoolConfig(bridge_ready_timeout_s=30))
    Layout(config.data_dir).create()
    store = Store(config.database_url)
    store.migrate()
    launcher = SlowReadyLauncher()
    offload = Offload()
    runtime = LocalRuntime.start(config, store, launcher, offload, Metrics(), start_timeout_s=CALLER_TIMEOUT_S)
    yield runtime, store, launcher
    runtime.shutdown()
    offload.shutdown()
    store.close()


def test_a_grant_after_the_caller_gave_up_is_released(runtime: Running, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    rt, store, launcher = runtime
    # A caller waits for a sandbox start that began up to the queue's cap (the start bounds
    # itself); made as short as the caller's timeout here, so the caller gives up first.
    monkeypatch.setattr("ashd.runtime.pending.QUEUE_WAIT_CAP_S", CALLER_TIMEOUT_S)
    agent_dir = tmp_path / "agent"
    agent_dir.mkdir()
    (agent_dir / "CLAUDE.md").write_text("You are a test agent.\n")
    agent = store.upsert_agent(TENANT, "slow", str(agent_dir), {})
    message = MessageOptions.from_request({"content": "hi"})

    async def scenario() -> list[bytes]:
        session = await rt.create(TENANT, agent, SessionOptions(), may_use_prewarmed=False)
        await rt.configure(TENANT, session.id, {})  # lets the sandbox go: the next turn starts one
        launcher.delay = SLOW_READY_S
        with caplog.at_level(logging.WARNING, logger="ashd.runtime.offload"):
            with pytest.raises(Unavailable):
                await rt.send(TENANT, session.id, message)
            # The actor grants the turn once the sandbox is ready, to nobody: the runtime hands
            # it back. (An actor that answers Pending grants nothing late; then nothing is logged.)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + SLOW_READY_S + 15
            while "compensating" not in caplog.text and loop.time() < deadline:
                await asyncio.sleep(0.05)
        launcher.delay = 0.0
        turn = await rt.send(TENANT, session.id, message)  # no 409: the late grant was released
        frames = [data async for _, data in turn.subscribe()]
        await rt.end(TENANT, session.id)
        return frames

    frames = asyncio.run(scenario())
    assert b"event: session_start" in frames[0] and b"event: done" in frames[-1]
