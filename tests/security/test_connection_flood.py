"""Issue #15: one agent cannot take ashd down with connections.

An agent opens 2000 connections to its model proxy from inside its sandbox (its own Bash
tool, four processes holding 500 each) against an ashd whose file-descriptor limit is 1024
(soft and hard, as a default shell gives), so without a per-sandbox cap the flood alone
would exhaust ashd. While it holds them: ashd's own descriptors stay few, another tenant
creates a session and gets its reply, DELETE removes the flooding session with every one of
its processes, and SIGTERM stops ashd in bounded time with nothing left behind.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from ashd.scripted.server import ScriptedModel
from tests.security.conftest import Agent
from tests.support.daemon import AshdProcess, sse_events

SECRET = "internal-secret-for-the-flood-test"
FLOOD = """cat > flood.py <<'PY'
import os, socket, sys, time
r, w = os.pipe()
for _ in range(4):
    if os.fork() == 0:
        os.close(r)
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        held, failed = [], 0
        while len(held) + failed < 500 and failed < 20:
            s = socket.socket()
            s.settimeout(2)
            try:
                s.connect(("127.0.0.1", 8080))
                held.append(s)
            except OSError:
                s.close()
                failed += 1
        os.write(w, b"%d %d " % (len(held), failed))
        os.close(w)
        time.sleep(3600)
        os._exit(0)
os.close(w)
data = b""
while chunk := os.read(r, 4096):
    data += chunk
counts = [int(x) for x in data.split()]
with open("flood.status", "w") as f:
    f.write("opened=%d failed=%d" % (sum(counts[0::2]), sum(counts[1::2])))
PY
python3 flood.py MARKER; cat flood.status"""


def _marked(marker: str) -> list[int]:
    """Host pids whose command line carries ``marker`` (the flood's processes)."""
    pids = []
    for proc in psutil.process_iter(["cmdline"]):
        if marker in " ".join(proc.info["cmdline"] or ()):
            pids.append(proc.pid)
    return pids


def _wait_for(predicate: Callable[[], bool], what: str, deadline_s: float = 120.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


class Flood:
    """A session whose agent floods its model proxy; its turn runs on a thread (the agent's
    own next model request must wait for a free slot, so the turn ends late)."""

    def __init__(self, daemon: AshdProcess, agent: str) -> None:
        self.client = httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=60)
        resp = self.client.post("/api/sessions", json={"agent": agent})
        assert resp.status_code == 201, resp.text
        self.sid = resp.json()["session"]["id"]
        self.marker = f"flood-{uuid.uuid4().hex[:12]}"
        self.status = daemon.data_dir / "sandboxes" / self.sid / "workspace" / "flood.status"
        self.events: list[tuple[str, Any]] = []
        self.thread = threading.Thread(target=self._turn, daemon=True)
        self.thread.start()

    def _turn(self) -> None:
        try:
            with self.client.stream("POST", f"/api/sessions/{self.sid}/messages", timeout=300,
                                    json={"content": f"[[bash: {FLOOD.replace('MARKER', self.marker)}]]"}) as resp:
                self.events = sse_events(resp.read().decode())
        except httpx.HTTPError as exc:
            self.events = [("client-error", str(exc))]

    def held(self) -> str:
        _wait_for(lambda: self.status.exists() and "opened=" in self.status.read_text(), "the flood to be up")
        return self.status.read_text()

    def close(self) -> None:
        self.thread.join(60)
        self.client.close()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, Any]]:
    agent = tmp_path / "agent"
    (agent / ".ashd").mkdir(parents=True)
    (agent / "CLAUDE.md").write_text("You are the flood test agent.\n")
    (agent / ".ashd" / "sandbox.json").write_text(json.dumps({"limits": {"memoryMb": 512, "pids": 64}}))
    mount_root = Path("/run") / f"ashd-flood-{uuid.uuid4().hex[:8]}"
    with ScriptedModel() as model:
        daemon = AshdProcess(tmp_path / "data", model.base_url, None, {
            "ASH_INTERNAL_SECRET": SECRET, "ASH_SANDBOX_MOUNT_ROOT": str(mount_root)},
            wrap=["prlimit", "--nofile=1024:1024", "--"])
        daemon.start()
        a = httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=60)
        b = httpx.Client(base_url=daemon.url, timeout=60)
        try:
            a.post("/api/agents", json={"name": "flood", "path": str(agent)}).raise_for_status()
            minted = httpx.post(f"{daemon.url}/api/internal/api-keys", json={"tenantId": "tenant-b"},
                                headers={"Authorization": f"Bearer {SECRET}"}, timeout=30)
            assert minted.status_code == 201, minted.text
            b.headers["Authorization"] = f"Bearer {minted.json()['key']}"
            # A tenant deploys by upload (deploying a server folder is the operator's).
            b.post("/api/agents", json={"name": "calm", "files": [
                {"path": str(f.relative_to(agent)), "content": base64.b64encode(f.read_bytes()).decode()}
                for f in sorted(agent.rglob("*")) if f.is_file()]}).raise_for_status()
            yield {"daemon": daemon, "a": a, "b": b, "mount_root": mount_root}
        finally:
            a.close()
            b.close()
            daemon.stop(timeout=180)
            with contextlib.suppress(OSError):
                mount_root.rmdir()  # ashd removes what it made inside; the root is this test's


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _open_fds(daemon: AshdProcess) -> int:
    assert daemon.proc is not None
    return len(os.listdir(f"/proc/{daemon.proc.pid}/fd"))


def test_a_connection_flood_leaves_ashd_serving_deleting_and_stopping(world: dict[str, Any]) -> None:
    daemon: AshdProcess = world["daemon"]
    first = Flood(daemon, "flood")
    held = first.held()
    assert _marked(first.marker), "the flood's processes are running"

    # Another tenant still creates a session and gets its reply.
    resp = world["b"].post("/api/sessions", json={"agent": "calm"})
    assert resp.status_code == 201, resp.text
    calm = Agent(world["b"], resp.json()["session"]["id"])
    assert "still serving" in json.dumps(calm.turn("[[say: still serving]]"))
    assert int(held.split("opened=")[1].split()[0]) >= 1000, held  # the flood was real
    assert _open_fds(daemon) < 400, "ashd holds the flood's connections"

    # DELETE removes the flooding session and every process it had.
    resp = world["a"].delete(f"/api/sessions/{first.sid}")
    assert resp.status_code in (200, 204), resp.text
    _wait_for(lambda: not _marked(first.marker), "the flooding session's processes to be gone")
    first.close()

    # SIGTERM with a second flood running: ashd stops in bounded time and leaves nothing.
    second = Flood(daemon, "flood")
    second.held()
    left = [p.pid for p in daemon.descendants()]
    started = time.monotonic()
    assert daemon.stop(timeout=150) == 0, daemon.log()
    assert time.monotonic() - started < 150
    assert not _marked(second.marker), "flood processes outlived ashd"
    assert not [pid for pid in left if _alive(pid)], "processes of ashd outlived it"
    mounts = Path("/proc/self/mounts").read_text()
    assert str(world["mount_root"]) not in mounts and str(daemon.data_dir) not in mounts
    second.close()
