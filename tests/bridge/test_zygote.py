"""The bridge zygote: a forked bridge is a fresh process that holds nothing of ashd or of other sessions.

Real zygote, real bridges, real CLI against the scripted model (docs/security.md, "Lifetime").
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from ashd.policy import RestartSpec, RestartType
from ashd.sandbox import logpump
from ashd.sandbox.launcher import DirectLauncher, SandboxSpec
from ashd.sandbox.logring import LogRing
from ashd.sandbox.zygote import BridgeProcess, BridgeZygote, ForkedBridge
from ashd.scripted.server import ScriptedModel
from ashd.wire import protocol
from tests.bridge.test_bridge_process import made_sockets, make_spec, wait_ready  # noqa: F401 (autouse)

PLANTED = "ASHD_ZYGOTE_PLANTED_SECRET"


@pytest.fixture
def zygote(monkeypatch: pytest.MonkeyPatch) -> Iterator[BridgeZygote]:
    monkeypatch.setenv(PLANTED, "do-not-leak")  # in ashd's environment: must reach no bridge
    # A restart only after 30 s: these tests see the time without a zygote (plain starts).
    started = BridgeZygote(RestartSpec(name="bridge zygote", type=RestartType.PERMANENT,
                                       backoff_base_s=30.0, backoff_cap_s=30.0)).start()
    assert started.running
    yield started
    started.close()


def start(zygote: BridgeZygote, tmp_path: Path, model: ScriptedModel, name: str) -> tuple[SandboxSpec, BridgeProcess]:
    spec = make_spec(tmp_path / name, model.base_url)
    proc = DirectLauncher(zygote).spawn(spec)
    assert isinstance(proc, ForkedBridge), "the zygote did not fork the bridge"
    assert proc.stderr is not None
    logpump.start(proc.stderr, spec.log_path, LogRing(), f"pump-{name}")
    assert wait_ready(proc) == protocol.READY_BYTE, spec.log_path.read_text()
    return spec, proc


def fd_targets(pid: int) -> set[str]:
    """What a process's descriptors name, where the name tells one object from another
    (pipes and sockets by inode, files by path; not anonymous inodes, not /dev/null)."""
    targets = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(("pipe:", "socket:", "/")) and target != "/dev/null":
            targets.add(target)
    return targets


def stop(proc: BridgeProcess) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=20)
    if proc.stdout is not None:
        proc.stdout.close()


def test_a_forked_bridge_holds_nothing_of_the_zygote_or_another_session(
        zygote: BridgeZygote, tmp_path: Path, scripted_model: ScriptedModel) -> None:
    (spec_a, a), (spec_b, b) = (start(zygote, tmp_path, scripted_model, n) for n in ("a", "b"))
    try:
        for spec, proc in ((spec_a, a), (spec_b, b)):
            # Its own session and process group (ashd signals the group), a child of the zygote.
            assert os.getsid(proc.pid) == proc.pid and os.getpgid(proc.pid) == proc.pid
            assert psutil.Process(proc.pid).ppid() == zygote.pid
            # ps shows it as the bridge of its session, like a bridge started on its own.
            assert psutil.Process(proc.pid).cmdline()[-3:] == ["-m", "ashd.bridge", str(spec.root / "bridge.json")]
            # Nothing of ashd's environment; the CLI it started has the session's own.
            assert PLANTED not in psutil.Process(proc.pid).environ()
            cli = psutil.Process(proc.pid).children()[0].environ()
            assert PLANTED not in cli and dict(spec.env).items() <= cli.items()
            assert Path(f"/proc/{proc.pid}/cwd").resolve() == spec.workspace.resolve()
        # The zygote has none of ashd's environment either.
        assert PLANTED not in psutil.Process(zygote.pid).environ()
        # No descriptor of the zygote (its control socket, children's status pipes) or of the
        # other bridge (its pipes to ashd, its CLI pipes, its socket) is held by a bridge.
        zygote_fds = fd_targets(zygote.pid)
        assert any(t.startswith("socket:") for t in zygote_fds)  # the control socket: the check can fail
        shared = fd_targets(a.pid) & fd_targets(b.pid)
        assert not shared, shared
        for proc in (a, b):
            assert not (fd_targets(proc.pid) & zygote_fds), fd_targets(proc.pid) & zygote_fds
    finally:
        stop(a)
        stop(b)


def test_exit_status_reaches_ashd_and_bridges_die_with_the_zygote(
        zygote: BridgeZygote, tmp_path: Path, scripted_model: ScriptedModel) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    proc = zygote.spawn([str(bad)], {"PATH": "/usr/bin:/bin"}, tmp_path)
    assert proc.wait(timeout=30) == 2
    assert proc.stderr is not None and b"cannot read settings" in proc.stderr.read()
    proc.stderr.close()
    stop(proc)

    _, bridge = start(zygote, tmp_path, scripted_model, "live")
    os.kill(zygote.pid, signal.SIGKILL)  # the zygote dies (as it does when ashd dies)
    assert bridge.wait(timeout=30) == -signal.SIGKILL
    stop(bridge)
    deadline = time.monotonic() + 30
    while psutil.pid_exists(bridge.pid) and psutil.Process(bridge.pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the bridge outlived its zygote"
        time.sleep(0.05)
    # Until its zygote is restarted, ashd starts bridges as plain processes.
    fallback = zygote.spawn([str(bad)], {"PATH": "/usr/bin:/bin"}, tmp_path)
    assert isinstance(fallback, subprocess.Popen) and fallback.wait(timeout=30) == 2
    fallback.communicate()


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def bad_start(zygote: BridgeZygote, tmp_path: Path) -> BridgeProcess:
    """A bridge start that exits at once with 2 (unreadable settings): cheap, and its status
    shows whether the zygote (a ForkedBridge) or Popen started it."""
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    proc = zygote.spawn([str(bad)], {"PATH": "/usr/bin:/bin"}, tmp_path)
    assert proc.wait(timeout=30) == 2
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    return proc


def test_a_killed_zygote_is_restarted_while_starts_fall_back(tmp_path: Path) -> None:
    restarts: list[int] = []
    # A long backoff floor: the test's start falls surely inside the restart's wait.
    spec = RestartSpec(name="bridge zygote", type=RestartType.PERMANENT, backoff_base_s=5.0, backoff_cap_s=5.0)
    zygote = BridgeZygote(spec, on_restart=lambda: restarts.append(1)).start()
    try:
        assert zygote.running and isinstance(bad_start(zygote, tmp_path), ForkedBridge)
        first = zygote.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: not zygote.status()["up"], "the zygote's death to be seen")
        # Right after: the start works, as a plain process; it does not wait for the restart.
        assert isinstance(bad_start(zygote, tmp_path), subprocess.Popen)
        wait_for(lambda: zygote.running, "the zygote to be restarted")
        assert zygote.pid != first and restarts == [1]
        assert zygote.status() == {"up": True, "pid": zygote.pid, "restarts": 1, "givenUp": None}
        forked = bad_start(zygote, tmp_path)
        assert isinstance(forked, ForkedBridge)  # forked again, by the new zygote
    finally:
        zygote.close()
    assert not zygote.running


def test_a_zygote_that_dies_at_once_is_given_up_on(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spec = RestartSpec(name="bridge zygote", type=RestartType.PERMANENT, intensity=2,
                       backoff_base_s=0.01, backoff_cap_s=0.05)
    zygote = BridgeZygote(spec, command=[sys.executable, "-c", "raise SystemExit(3)"])
    with caplog.at_level(logging.WARNING, logger="ashd.sandbox.zygote"):
        zygote.start()
        try:
            wait_for(lambda: zygote.given_up is not None, "the zygote to be given up on")
            assert zygote.restarts == 2 and not zygote.running
            assert zygote.given_up is not None and "exited 3 times" in zygote.given_up
            assert "exit status 3" in zygote.given_up
            assert isinstance(bad_start(zygote, tmp_path), subprocess.Popen)
        finally:
            zygote.close()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "not restarted any more" in errors[0], errors


FIRST_CONNECT = """
import asyncio, json, sys
from pathlib import Path
from ashd.bridge import zygote
from ashd.bridge.driver import Driver
from ashd.bridge.server import BridgeServer
from ashd.wire.settings import BridgeSettings

zygote.preload()
before = set(sys.modules)
settings = BridgeSettings.read(Path(sys.argv[1]))

async def connect() -> None:
    server = BridgeServer(Path(settings.socket_path), settings.session_id, settings.cli_path, settings.workspace)
    driver = Driver(settings, session_store=server.transcripts)
    await driver.connect()
    await driver.close()

asyncio.run(connect())
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def test_the_zygote_imports_what_a_bridge_first_connect_would(tmp_path: Path, scripted_model: ScriptedModel) -> None:
    """A forked bridge imports nothing on its way to a connected CLI: what the SDK imports
    lazily there (anyio's backend, its subprocess support) the zygote imported before forking
    (each import would otherwise delay every session start)."""
    spec = make_spec(tmp_path, scripted_model.base_url)
    settings_file = tmp_path / "bridge.json"
    spec.settings.write(settings_file)
    out = subprocess.run([sys.executable, "-P", "-c", FIRST_CONNECT, str(settings_file)], env=dict(spec.env),
                         cwd=spec.workspace, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "[]", out.stdout
