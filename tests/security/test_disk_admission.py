"""Issue #15 item 4: ashd never promises disk that is not there.

A real ashd (real bwrap, real CLI, scripted model, SQLite) whose data dir is a small ext4 file
system of its own (a loop-mounted 700 MB image made here), so what the workspaces, the store and
the snapshots do to the disk is measured, not simulated:

- creates beyond what the disk can give are refused with a clear 507, also when they race;
- agents writing their whole quota never break a neighbour's turn or the store;
- a workspace over the snapshot limit is a session event and a metric;
- the conversation comes back when the workspace survived but the CLI's transcript did not.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import HELLO_AGENT
from tests.support.daemon import AshdProcess, sse_events
from tests.support.loopfs import loop_fs, run, unmount

DISK_MB, QUOTA_MB, RESERVE_MB = 700, 250, 64
SNAPSHOT_LIMIT = 8 << 20


@pytest.fixture(scope="module")
def small_disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A 700 MB ext4 file system mounted under the test's tmp dir; unmounted even on failure."""
    with loop_fs(tmp_path_factory.mktemp("disk"), DISK_MB) as mnt:
        yield mnt


@pytest.fixture(scope="module")
def disk_daemon(small_disk: Path) -> Iterator[AshdProcess]:
    from ashd.scripted.server import ScriptedModel

    model = ScriptedModel()
    model.start()
    daemon = AshdProcess(small_disk / "data", model.base_url, None, {
        "ASH_SANDBOX_MOUNT_ROOT": "/run/ashd-disk-admission", "ASH_SANDBOX_DISK_MB": str(QUOTA_MB),
        "ASH_DISK_RESERVE_MB": str(RESERVE_MB), "ASH_DISK_RESERVE_PERCENT": "0",
        "ASH_SNAPSHOT_MAX_BYTES": str(SNAPSHOT_LIMIT),
        # One start at a time: of three creates at once, at least one queues and answers 201
        # before its start runs (issue #18's early answer). Its disk is admitted when it queues,
        # so the refused one's 507 is still its create's own answer, never its first message's.
        "ASH_MAX_CONCURRENT_STARTS": "1"})
    daemon.log_path = small_disk.parent / "ashd.log"  # off the small disk, and kept after it goes
    try:
        daemon.start()
        with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=60) as c:
            c.post("/api/agents", json={"name": "hello", "path": str(HELLO_AGENT)}).raise_for_status()
        yield daemon
    finally:
        daemon.stop()
        model.stop()


@pytest.fixture(scope="module")
def client(disk_daemon: AshdProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=disk_daemon.url, headers=disk_daemon.headers, timeout=180) as c:
        yield c


@pytest.fixture(scope="module")
def creates(client: httpx.Client) -> list[httpx.Response]:
    """Three creates at once on a disk with room for two quotas (700 MB - 64 MB reserve)."""
    results: list[httpx.Response] = []
    lock = threading.Lock()

    def create() -> None:
        resp = client.post("/api/sessions", json={"agent": "hello"})
        with lock:
            results.append(resp)

    threads = [threading.Thread(target=create) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return results


@pytest.fixture(scope="module")
def admitted(creates: list[httpx.Response]) -> list[str]:
    return [r.json()["session"]["id"] for r in creates if r.status_code == 201]


def turn(c: httpx.Client, sid: str, content: str) -> list[tuple[str, Any]]:
    with c.stream("POST", f"/api/sessions/{sid}/messages", json={"content": content}) as resp:
        assert resp.status_code == 200, resp.read()
        return sse_events(resp.read().decode())


def tool_output(events: list[tuple[str, Any]]) -> str:
    results = [d for n, d in events if n == "tool_result"]
    assert results, events
    content = results[-1]["content"]
    return content if isinstance(content, str) else json.dumps(content)


def free_mb(path: Path) -> float:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize / (1 << 20)


def lifecycle(c: httpx.Client, sid: str) -> list[dict[str, Any]]:
    events = c.get(f"/api/sessions/{sid}/events", params={"limit": 1000}).json()["events"]
    return [json.loads(e["data"]) for e in events if e["type"] == "lifecycle"]


def test_creates_beyond_the_disk_are_refused_with_507(creates: list[httpx.Response], client: httpx.Client,
                                                     disk_daemon: AshdProcess) -> None:
    assert sorted(r.status_code for r in creates) == [201, 201, 507], [r.text for r in creates]
    assert "waits in the start queue" in disk_daemon.log(tail=None)  # a create answered from the queue
    (refused,) = [r for r in creates if r.status_code == 507]
    body = refused.json()
    assert body["statusCode"] == 507
    for hint in ("sandbox.disk_mb", "disk_reserve", "end sessions", f"{QUOTA_MB} MiB"):
        assert hint in body["error"], body["error"]
    assert "/tmp" not in body["error"] and "/data" not in body["error"]  # no host path for the client
    assert len(client.get("/api/sessions").json()["sessions"]) == 2  # the refused one left nothing behind
    again = client.post("/api/sessions", json={"agent": "hello"})
    assert again.status_code == 507, again.text


def test_agents_writing_their_quota_break_no_neighbour_and_no_store(
        admitted: list[str], client: httpx.Client, small_disk: Path) -> None:
    assert admitted
    for sid in admitted:
        out = tool_output(turn(client, sid, f"[[bash: dd if=/dev/zero of=big bs=1M count={QUOTA_MB + 50}; "
                                            "sync; ls -la big]]"))
        assert "No space left on device" in out, out
    for sid in admitted:
        turn(client, sid, "[[bash: rm -f big]]")  # room again inside its own image
        turn(client, sid, f"[[say: still serving {sid[:8]}]]")
        texts = json.dumps(client.get(f"/api/sessions/{sid}/messages").json()["messages"])
        assert f"still serving {sid[:8]}" in texts  # the reply was stored and reads back
    # Every quota was written in full, and the disk still holds the reserve the store needs.
    assert free_mb(small_disk) > RESERVE_MB / 2
    assert client.post("/api/sessions", json={"agent": "hello"}).status_code == 507  # still no room


def test_a_workspace_over_the_snapshot_limit_is_an_event_and_a_metric(
        admitted: list[str], client: httpx.Client) -> None:
    sid = admitted[0]
    turn(client, sid, f"[[bash: dd if=/dev/zero of=over-limit bs=1M count={2 * SNAPSHOT_LIMIT >> 20}]]")
    deadline = time.monotonic() + 120
    skipped: list[dict[str, Any]] = []
    while not skipped and time.monotonic() < deadline:  # the snapshot follows the turn's reply
        skipped = [e for e in lifecycle(client, sid) if e.get("type") == "snapshot_skipped"]
        if not skipped:
            time.sleep(0.2)
    assert skipped, lifecycle(client, sid)
    assert skipped[-1]["reason"] == "too_large" and skipped[-1]["limitBytes"] == SNAPSHOT_LIMIT
    assert "ASH_SNAPSHOT_MAX_BYTES" in skipped[-1]["message"]
    metrics = client.get("/metrics").text
    line = next(ln for ln in metrics.splitlines() if ln.startswith('ashd_snapshot_skipped_total{reason="too_large"}'))
    assert float(line.split()[-1]) >= 1
    turn(client, sid, "[[bash: rm -f over-limit]]")


def _loop_devices_of(image: Path) -> str:
    return subprocess.run(["losetup", "-j", str(image)], capture_output=True, text=True, timeout=30,
                          check=False).stdout.strip()


def test_the_transcript_comes_back_when_the_workspace_survived_without_it(
        admitted: list[str], client: httpx.Client, disk_daemon: AshdProcess, tmp_path: Path) -> None:
    sid = admitted[1]
    turn(client, sid, "[[bash: echo kept > kept.txt]] [[say: remember kappa-7]]")
    assert client.post(f"/api/sessions/{sid}/stop").json()["session"]["status"] == "stopped"
    image = disk_daemon.data_dir / "sandboxes" / sid / "disk.img"
    deadline = time.monotonic() + 60
    while _loop_devices_of(image) and time.monotonic() < deadline:  # ashd's teardown unmounts it
        time.sleep(0.1)
    assert not _loop_devices_of(image)
    mnt = tmp_path / "img"
    mnt.mkdir()
    run("mount", "-o", "loop", str(image), str(mnt))
    try:
        projects = mnt / "home" / ".claude" / "projects"
        assert list(projects.glob(f"*/{sid}.jsonl")), "the CLI kept no transcript on the image"
        run("rm", "-rf", str(projects))
        assert (mnt / "workspace" / "kept.txt").exists()  # the workspace survives
    finally:
        unmount(mnt)
    assert client.post(f"/api/sessions/{sid}/resume").json()["session"]["status"] == "active"
    events = turn(client, sid, "[[bash: cat kept.txt]] [[echo-history]]")
    assert "kept" in tool_output(events)
    result = [d for n, d in events if n == "turn_complete"][-1]["result"]
    assert "remember kappa-7" in str(result), result
