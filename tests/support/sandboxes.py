"""Finding a running ashd's sandbox processes from a test (which runs as root)."""

from __future__ import annotations

from typing import Any

import httpx
import psutil

from ashd.sandbox import cgroups
from ashd.sandbox.services import instance_of
from tests.support.daemon import AshdProcess, sse_events


def instance(daemon: AshdProcess) -> str:
    """The daemon's instance digest (its cgroups and run dirs are named by it)."""
    return instance_of(daemon.data_dir)


def layout_of(daemon: AshdProcess) -> cgroups.CgroupLayout:
    return cgroups.detect(instance=instance(daemon))


def sandbox_pids(daemon: AshdProcess, sid: str) -> set[int]:
    """Every process in the session's sandbox cgroups (under whichever tenant's level)."""
    layout = layout_of(daemon)
    levels = {""} | {level.name for parent in layout.parents.values() if parent.is_dir()
                     for level in parent.iterdir() if level.name.startswith(cgroups.TENANT_PREFIX)}
    return set().union(*(cgroups.SandboxCgroup(layout, sid, level).pids() for level in levels))


def alive(pid: int) -> bool:
    """Running (a zombie is dead, only not reaped yet)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def cmdline(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return ""


def cmdlines(pids: set[int]) -> list[str]:
    return [line for line in map(cmdline, pids) if line]


def cli_pid(daemon: AshdProcess, sid: str) -> int:
    """The CLI of the session's sandbox (the innermost process running the CLI binary)."""
    found = [p for p in sandbox_pids(daemon, sid) if cmdline(p).startswith("/opt/claude/claude")]
    assert len(found) == 1, cmdlines(sandbox_pids(daemon, sid))
    return found[0]


def bridge_pid(daemon: AshdProcess, sid: str) -> int:
    found = [p.pid for p in daemon.descendants() if "ashd.bridge" in cmdline(p.pid) and sid in cmdline(p.pid)]
    assert len(found) == 1, found
    return found[0]


def turn(c: httpx.Client, sid: str, content: str, timeout: float = 180) -> list[tuple[str, Any]]:
    with c.stream("POST", f"/api/sessions/{sid}/messages", json={"content": content}, timeout=timeout) as r:
        assert r.status_code == 200, r.read()
        return sse_events(r.read().decode())


def answer(events: list[tuple[str, Any]]) -> str:
    done = [d for n, d in events if n == "turn_complete"]
    assert done, events
    return str(done[-1]["result"])
