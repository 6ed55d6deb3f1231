"""Issue #15 item 8: a wedged turn ends, and stop always works.

The agent's CLI is frozen with SIGSTOP in the middle of a tool call that never ends. The turn watchdog
(``ASH_TURN_IDLE_TIMEOUT_S``, 8 s here) interrupts, then kills the agent process; the turn ends
with ``error`` and ``done`` and the next message answers. A stop of a session whose CLI and
bridge are both frozen mid-turn completes, leaves no process, and the session resumes.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import HELLO_AGENT
from tests.support.daemon import AshdProcess
from tests.support.sandboxes import alive, answer, bridge_pid, cli_pid, cmdlines, sandbox_pids, turn

IDLE_S = 8  # the test must find and freeze the CLI before this much silence (a loaded machine)
TURN_DEADLINE_S = 90.0  # generous for a shared machine; without a watchdog the turn never ends


@pytest.fixture
def daemon(start_ashd: Any) -> AshdProcess:
    started: AshdProcess = start_ashd(None, ASH_TURN_IDLE_TIMEOUT_S=str(IDLE_S))
    return started


@pytest.fixture
def client(daemon: AshdProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=60) as c:
        c.post("/api/agents", json={"name": "hello", "path": str(HELLO_AGENT)}).raise_for_status()
        yield c


def new_session(c: httpx.Client) -> str:
    resp = c.post("/api/sessions", json={"agent": "hello"})
    assert resp.status_code == 201, resp.text
    sid = str(resp.json()["session"]["id"])
    assert answer(turn(c, sid, "[[say: up]]")) == "up"
    return sid


def wedge_mid_tool(daemon: AshdProcess, c: httpx.Client, sid: str, freeze_bridge: bool = False,
                   ) -> tuple[threading.Thread, list[list[tuple[str, Any]]], set[int]]:
    """Start a turn running a tool that never ends, then SIGSTOP the CLI (and the bridge). Returns the
    turn's thread, where its events land, and every process of the sandbox."""
    events: list[list[tuple[str, Any]]] = []

    def run() -> None:
        events.append(turn(c, sid, "[[bash: tail -f /dev/null]] [[say: never]]", timeout=TURN_DEADLINE_S))

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    deadline = time.monotonic() + 120
    while "tail -f /dev/null" not in cmdlines(sandbox_pids(daemon, sid)):
        assert time.monotonic() < deadline and not events, (events, cmdlines(sandbox_pids(daemon, sid)))
        time.sleep(0.1)
    procs = sandbox_pids(daemon, sid) | {bridge_pid(daemon, sid)}
    os.kill(cli_pid(daemon, sid), signal.SIGSTOP)
    if freeze_bridge:
        os.kill(bridge_pid(daemon, sid), signal.SIGSTOP)
    return worker, events, procs


def assert_gone(procs: set[int]) -> None:
    """Killed processes take a moment to exit (a big CLI unmaps its memory): wait, with a deadline."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(p) for p in procs):
        time.sleep(0.05)
    left = {p for p in procs if alive(p)}
    assert not left, [(p, psutil.Process(p).status(), cmdlines({p})) for p in left]


def test_the_watchdog_ends_a_wedged_turn_and_the_session_goes_on(daemon: AshdProcess, client: httpx.Client) -> None:
    sid = new_session(client)
    worker, events, procs = wedge_mid_tool(daemon, client, sid)
    worker.join(TURN_DEADLINE_S + 10)
    assert events, f"the wedged turn did not end within {TURN_DEADLINE_S}s"
    names = [n for n, _ in events[0]]
    errors = [d["error"] for n, d in events[0] if n == "error"]
    assert names[-1] == "done" and "turn_complete" not in names, events[0]
    assert any(f"no progress for {IDLE_S}s" in e and "killed" in e for e in errors), errors
    assert_gone(procs)
    assert answer(turn(client, sid, "[[say: after-the-watchdog]]")) == "after-the-watchdog"


def test_stop_ends_a_frozen_turn_and_leaves_no_process(daemon: AshdProcess, client: httpx.Client) -> None:
    sid = new_session(client)
    worker, events, procs = wedge_mid_tool(daemon, client, sid, freeze_bridge=True)
    stopped = client.post(f"/api/sessions/{sid}/stop", timeout=TURN_DEADLINE_S)
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["session"]["status"] == "stopped"
    worker.join(TURN_DEADLINE_S)
    assert events and [n for n, _ in events[0]][-1] == "done", events
    assert any("stopped" in d["error"] for n, d in events[0] if n == "error"), events[0]
    assert_gone(procs)
    assert not sandbox_pids(daemon, sid)
    resumed = client.post(f"/api/sessions/{sid}/resume")
    assert resumed.status_code == 200, resumed.text
    assert answer(turn(client, sid, "[[say: resumed-after-stop]]")) == "resumed-after-stop"
