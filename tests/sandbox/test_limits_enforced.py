"""Limits hold: pids (fork bomb), memory (OOM seen from the cgroup, pushed by the watcher),
disk (the workspace image), and the workspace survives a sandbox restart."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ashd.limit_fields import Limits
from ashd.sandbox.oom import OomWatcher
from tests.sandbox.conftest import Box

FORK_BOMB = """python3 -c '
import os, time
n = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(2); os._exit(0)
        n += 1
except OSError as e:
    print("stopped at", n, e.errno)
'"""


def test_fork_bomb_is_stopped_by_pids(make_box: Callable[..., Box]) -> None:
    box = make_box("pids", Limits(pids=40))
    res = box.run(FORK_BOMB)
    assert "stopped at" in res.stdout, res.stderr
    forked = int(res.stdout.split()[2])
    assert 20 <= forked < 40
    assert "errno" not in res.stdout and res.stdout.split()[3] == "11"  # EAGAIN


def test_memory_bomb_is_oom_killed_and_reported(make_box: Callable[..., Box]) -> None:
    box = make_box("mem", Limits(memory_mb=192))
    watcher = OomWatcher()
    fired = threading.Event()
    counts: list[int] = []
    watcher.watch(box.kit.cgroup, lambda kills: (counts.append(kills), fired.set()))
    try:
        res = box.run("python3 -c 'a = bytearray(1 << 30); print(len(a))'; echo rc=$?")
        assert "rc=137" in res.stdout
        assert fired.wait(5), "the OOM watcher did not fire"
        assert counts[0] >= 1 and box.kit.cgroup.oom_kills() >= 1
    finally:
        watcher.unwatch(box.kit.cgroup)
        watcher.close()


def test_disk_fill_stops_at_the_quota_and_data_survives(make_box: Callable[..., Box]) -> None:
    box = make_box("disk", Limits(disk_mb=32))
    res = box.run("dd if=/dev/zero of=/workspace/fill bs=1M count=100 2>&1; echo keep > /workspace/kept")
    assert "No space left on device" in res.stdout
    written = (box.kit.workspace / "fill").stat().st_size
    assert written <= 32 << 20
    box.kit.teardown()
    assert not box.kit.disk.mounted and box.kit.disk.image.exists()
    box.kit.setup({"PATH": "/usr/bin:/bin"}, [])
    assert (box.kit.workspace / "kept").read_text() == "keep\n"
    assert (box.kit.root / "workspace" / "kept").read_text() == "keep\n"  # the host-side view


def test_cpu_quota_is_written_with_a_burst_of_one_period(make_box: Callable[..., Box]) -> None:
    box = make_box("cpu", Limits(cpus=0.5))
    assert (_quota(box), _burst(box)) == ("50000", "50000")
    box.kit.cgroup.limit_cpu(1.0)
    box.kit.cgroup.limit_cpu(0.25)  # lowered below the burst it had: the kernel refuses unless the burst goes first
    assert (_quota(box), _burst(box)) == ("25000", "25000")
    res = box.run("cat /proc/self/cgroup")
    assert res.returncode == 0


def _quota(box: Box) -> str:
    if box.kit.cgroup.layout.mode == "v2":
        return (box.kit.cgroup.dirs["unified"] / "cpu.max").read_text().split()[0]
    return (box.kit.cgroup.dirs["cpu"] / "cpu.cfs_quota_us").read_text().strip()


def _burst(box: Box) -> str:
    """The sandbox's CPU burst; its quota where the kernel has none (before Linux 5.14)."""
    v2 = box.kit.cgroup.layout.mode == "v2"
    path = box.kit.cgroup.dirs["unified"] / "cpu.max.burst" if v2 else box.kit.cgroup.dirs["cpu"] / "cpu.cfs_burst_us"
    return path.read_text().strip() if path.exists() else _quota(box)


def test_a_start_runs_unthrottled_for_its_boost_then_under_its_quota(make_box: Callable[..., Box]) -> None:
    box = make_box("boost", Limits(cpus=0.5), boost_s=0.5)
    assert _quota(box) in ("-1", "max")  # the CLI's start and first query: no quota yet
    deadline = time.monotonic() + 30
    while _quota(box) != "50000":
        assert time.monotonic() < deadline, "the quota was never set after the boost"
        time.sleep(0.05)
    assert box.run("true").returncode == 0
    # A sandbox torn down during its boost: the timer is cancelled, nothing is written later.
    short = make_box("gone", Limits(cpus=0.5), boost_s=0.3)
    short.kit.teardown()
    time.sleep(0.5)
    assert not short.kit.cgroup.dirs[next(iter(short.kit.cgroup.dirs))].exists()


def test_teardown_kills_everything_and_removes_groups(make_box: Callable[..., Box]) -> None:
    box = make_box("kill")
    res = box.run("setsid sleep 300 < /dev/null > /dev/null 2>&1 & echo started")
    assert "started" in res.stdout
    box.kit.teardown()
    assert all(not d.exists() for d in box.kit.cgroup.dirs.values())
    assert not box.kit.netns.path.exists()
