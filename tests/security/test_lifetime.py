"""Issue #15 item 7: agents die with ashd, and a restarted ashd sweeps only what is its own.

A daemon is killed with SIGKILL while its agent runs a long tool that also daemonized a
process (``setsid -f``). Every process of that sandbox must be gone within 2 s. The restarted
daemon leaves nothing stale (cgroups, mounts, loop devices, run dirs) and the session answers
again, while a neighbour daemon on the same host (same cgroup, same mount root) keeps its live
sandbox through all of it.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from ashd.sandbox import cgroups, reaper
from tests.conftest import HELLO_AGENT
from tests.support.daemon import AshdProcess
from tests.support.sandboxes import alive, answer, cmdlines, instance, layout_of, sandbox_pids, turn

MOUNT_ROOT = Path("/run/ashd-test-lifetime")
KILL_DEADLINE_S = 2.0


def leftovers(daemon: AshdProcess) -> dict[str, list[str]]:
    """What of this daemon's sandboxes exists on the host: groups, mounts, loops, run dirs."""
    sandboxes, run = daemon.data_dir / "sandboxes", MOUNT_ROOT / instance(daemon)
    groups = [str(group) for parent in layout_of(daemon).parents.values() if parent.is_dir()
              for child in parent.iterdir() if child.is_dir()
              for group in (child.iterdir() if child.name.startswith(cgroups.TENANT_PREFIX) else [child])
              if group.is_dir()]  # sandbox groups; an empty tenant level is not one
    mounts = reaper.stale_under(reaper.mount_points(Path("/proc/self/mountinfo").read_text()), [sandboxes, run])
    runs = [str(child) for child in run.iterdir()] if run.is_dir() else []
    return {"cgroups": groups, "mounts": mounts, "loops": reaper.loops_backed_inside([sandboxes]), "run dirs": runs}


@pytest.fixture
def daemons(tmp_path: Path, scripted_model: Any) -> Iterator[list[AshdProcess]]:
    """[neighbour, victim]; the test appends the victim's successor. All are stopped after."""
    made: list[AshdProcess] = []
    try:
        for name in ("neighbour", "victim"):
            daemon = AshdProcess(tmp_path / name / "data", scripted_model.base_url, None,
                                 {"ASH_SANDBOX_MOUNT_ROOT": str(MOUNT_ROOT)})
            daemon.data_dir.parent.mkdir(parents=True)
            made.append(daemon)
            daemon.start()
        yield made
    finally:
        for daemon in made:
            daemon.stop()
        last = {d.data_dir: d for d in made}
        for daemon in last.values():  # killed and never restarted (the test failed): sweep
            if daemon.proc is not None and daemon.proc.returncode == -signal.SIGKILL:
                daemon.restarted().stop()


def session(daemon: AshdProcess) -> tuple[httpx.Client, str]:
    c = httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=60)
    c.post("/api/agents", json={"name": "hello", "path": str(HELLO_AGENT)}).raise_for_status()
    resp = c.post("/api/sessions", json={"agent": "hello"})
    assert resp.status_code == 201, resp.text
    return c, str(resp.json()["session"]["id"])


def test_agents_die_with_ashd_and_a_restart_sweeps_only_its_own(daemons: list[AshdProcess]) -> None:
    neighbour, victim = daemons
    nc, nsid = session(neighbour)
    assert answer(turn(nc, nsid, "[[say: neighbour-up]]")) == "neighbour-up"
    neighbour_pids = sandbox_pids(neighbour, nsid)
    assert neighbour_pids, "the neighbour's sandbox has no process in its cgroup"

    vc, vsid = session(victim)
    assert answer(turn(vc, vsid, "[[say: victim-up]]")) == "victim-up"

    def long_turn() -> None:
        try:
            turn(vc, vsid, "[[bash: setsid -f sleep 300; sleep 120]] [[say: never]]")
        except httpx.HTTPError:
            pass  # the daemon is killed under it

    worker = threading.Thread(target=long_turn, daemon=True)
    worker.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        running = cmdlines(sandbox_pids(victim, vsid))
        if any(c == "sleep 300" for c in running) and any(c == "sleep 120" for c in running):
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the tool did not start: {cmdlines(sandbox_pids(victim, vsid))}")
    assert victim.proc is not None
    uid = int((victim.data_dir / "sandboxes" / vsid / "uid").read_text())
    doomed = sandbox_pids(victim, vsid) | {p.pid for p in victim.descendants()}
    doomed |= {p.pid for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == uid}
    assert len(doomed) >= 4  # bridge, bwrap, CLI, the tools

    victim.stop(signal.SIGKILL)
    deadline = time.monotonic() + KILL_DEADLINE_S
    while time.monotonic() < deadline and any(alive(p) for p in doomed):
        time.sleep(0.05)
    left = {p for p in doomed if alive(p)}
    assert not left, f"still running {KILL_DEADLINE_S}s after ashd was killed: {cmdlines(left)}"
    worker.join(30)
    vc.close()

    again = victim.restarted()
    daemons.append(again)
    assert leftovers(again) == {"cgroups": [], "mounts": [], "loops": [], "run dirs": []}
    assert all(alive(p) for p in neighbour_pids), "the neighbour's live sandbox was killed"
    assert leftovers(neighbour)["mounts"] and leftovers(neighbour)["cgroups"]  # untouched
    with httpx.Client(base_url=again.url, headers=again.headers, timeout=60) as c:
        assert answer(turn(c, vsid, "[[say: resumed]]")) == "resumed"
    assert answer(turn(nc, nsid, "[[say: neighbour-still-up]]")) == "neighbour-still-up"
    assert sandbox_pids(neighbour, nsid) >= neighbour_pids  # the same sandbox, not a restart
    nc.close()
