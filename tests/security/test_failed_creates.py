"""Issue #15 item 8 and issue #9 item 9: a create whose sandbox cannot start ends in ``error``
with nothing left on the host, and an ended session gives its disk image back.

The failure is real: the agent folder holds more than its own ``diskMb`` quota, so copying it
onto the sandbox's disk image fails with ENOSPC while the sandbox is being set up (after the
uid lease, the image and its loop mount were made). Needs root (the isolating launcher).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import HELLO_AGENT
from tests.support.agents import too_big_agent
from tests.support.daemon import AshdProcess, agent_processes, sse_events

if os.geteuid() != 0:
    pytest.skip("needs root (the isolating launcher)", allow_module_level=True)

UID_LOCK_DIR = Path("/run/ashd/uids")


@pytest.fixture
def mount_root() -> Iterator[Path]:
    root = Path(f"/run/ashd-test-failed-{uuid.uuid4().hex[:8]}")
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def daemon(start_ashd: Callable[..., AshdProcess], mount_root: Path) -> AshdProcess:
    return start_ashd(None, ASH_SANDBOX_MOUNT_ROOT=str(mount_root), ASH_RESTART_BACKOFF_BASE_S="0.05")


def client(daemon: AshdProcess) -> httpx.Client:
    return httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=300)


def leftovers(daemon: AshdProcess, mount_root: Path, sandbox_id: str) -> list[str]:
    """Everything of ``sandbox_id`` still on the host (empty: nothing)."""
    found = []
    folder = daemon.data_dir / "sandboxes" / sandbox_id
    if folder.exists():
        found.append(f"sandbox folder {folder}: {sorted(p.name for p in folder.iterdir())}")
    if (mount_root / sandbox_id).exists():
        found.append(f"run dir {mount_root / sandbox_id}")
    mounts = [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if sandbox_id in line]
    found += [f"mount: {line}" for line in mounts]
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        try:
            target = backing.read_text().strip()
        except OSError:
            continue
        if sandbox_id in target:
            found.append(f"loop device {backing.parent.parent.name} -> {target}")
    found += [f"process: {cmd}" for cmd in agent_processes(daemon)]
    for group in Path("/sys/fs/cgroup").glob(f"*/ashd-sandboxes/**/{sandbox_id}"):
        found.append(f"cgroup {group}")
    found += [f"uid lease {lock}" for lock in held_uid_locks(daemon)]
    return found


def held_uid_locks(daemon: AshdProcess) -> list[str]:
    """The uid lock files (host-wide flocks) this daemon still holds."""
    assert daemon.proc is not None
    inodes = {}
    for lock in UID_LOCK_DIR.glob("*.lock"):
        try:
            inodes[lock.stat().st_ino] = lock.name
        except OSError:
            continue
    held = []
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[1] == "FLOCK" and fields[4] == str(daemon.proc.pid):
            inode = int(fields[5].rsplit(":", 1)[1])
            if inode in inodes:
                held.append(inodes[inode])
    return held


def test_a_create_whose_sandbox_cannot_start_ends_in_error_and_leaves_nothing(
        daemon: AshdProcess, mount_root: Path, tmp_path: Path) -> None:
    with client(daemon) as api:
        api.post("/api/agents", json={"name": "too-big", "path": str(too_big_agent(tmp_path))}).raise_for_status()
        refused = api.post("/api/sessions", json={"agent": "too-big"})
        assert refused.status_code == 502, refused.text
        sessions = api.get("/api/sessions", params={"agent": "too-big"}).json()["sessions"]
        assert [s["status"] for s in sessions] == ["error"], sessions
        session = sessions[0]
        assert session["statusReason"], session
        assert api.get(f"/api/sessions/{session['id']}").json()["session"]["status"] == "error"
        assert leftovers(daemon, mount_root, session["id"]) == []
        assert "No space left" in daemon.log(None)  # the failure was the real one we planted


def test_an_ended_session_gives_its_disk_image_back_and_a_stopped_one_keeps_it(
        daemon: AshdProcess, mount_root: Path) -> None:
    with client(daemon) as api:
        api.post("/api/agents", json={"name": "hello", "path": str(HELLO_AGENT)}).raise_for_status()
        sid = api.post("/api/sessions", json={"agent": "hello"}).json()["session"]["id"]
        folder = daemon.data_dir / "sandboxes" / sid
        with api.stream("POST", f"/api/sessions/{sid}/messages", json={"content": "[[bash: echo kept > kept.txt]]"},
                        timeout=300) as resp:
            assert resp.status_code == 200
            assert sse_events(resp.read().decode())[-1][0] == "done"
        assert api.post(f"/api/sessions/{sid}/stop").json()["session"]["status"] == "stopped"
        assert (folder / "disk.img").is_file()  # resumable: its image stays
        assert api.post(f"/api/sessions/{sid}/resume").json()["session"]["status"] == "active"
        assert api.get(f"/api/sessions/{sid}/files/kept.txt").status_code == 200

        assert api.delete(f"/api/sessions/{sid}").json()["session"]["status"] == "ended"
        assert leftovers(daemon, mount_root, sid) == []
        # Its files stay readable from the snapshot.
        assert api.get(f"/api/sessions/{sid}/files/kept.txt").status_code == 200


def test_a_create_refused_at_capacity_leaves_no_row_and_nothing_on_the_host(
        start_ashd: Callable[..., AshdProcess], mount_root: Path) -> None:
    daemon = start_ashd(None, ASH_SANDBOX_MOUNT_ROOT=str(mount_root), ASH_MAX_SANDBOXES="1")
    sandboxes = daemon.data_dir / "sandboxes"
    with client(daemon) as api:
        api.post("/api/agents", json={"name": "hello", "path": str(HELLO_AGENT)}).raise_for_status()
        busy = api.post("/api/sessions", json={"agent": "hello"}).json()["session"]["id"]
        with api.stream("POST", f"/api/sessions/{busy}/messages",
                        json={"content": "[[sleep: 20000]] [[say: slow]]"}, timeout=300) as turn:
            assert turn.status_code == 200
            chunks = turn.iter_bytes()
            next(chunks)  # the turn runs: its sandbox is the only one, and busy
            refused = api.post("/api/sessions", json={"agent": "hello"})
            assert refused.status_code == 503, refused.text
            # Refused before anything ran: no row (like Ash), and no folder beside busy's.
            assert [s["id"] for s in api.get("/api/sessions").json()["sessions"]] == [busy]
            assert sorted(p.name for p in sandboxes.iterdir()) == [busy]
            for _ in chunks:  # let the turn finish
                pass
        api.delete(f"/api/sessions/{busy}").raise_for_status()  # leftovers() sees the whole daemon
        assert leftovers(daemon, mount_root, busy) == []
        assert sorted(p.name for p in sandboxes.iterdir()) == []
        assert [p for p in mount_root.glob("*/*") if p.name != "uids"] == []  # no run dir of any sandbox
