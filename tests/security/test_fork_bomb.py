"""Issue #15 item 8: a tool cannot take the agent down.

A Bash tool forks sleeping children until the kernel refuses (bounded at 2000). The tool ends
with its result, and while every child still sleeps the same CLI process answers the next
turn: the agent keeps a reserve of tasks the tools cannot use.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import HELLO_AGENT
from tests.support.daemon import AshdProcess
from tests.support.sandboxes import answer, cli_pid, cmdline, sandbox_pids, turn

MARKER = "forkbomb-5e1f"
# Children detach from the tool's output (so the tool returns) and sleep until the test kills them.
BOMB = f"""python3 - {MARKER} <<'PY'
import os, time
n, refused, until = 0, 0, time.monotonic() + 15
while time.monotonic() < until:  # keeps the task table full for 15 s, talking all along
    if n >= 2000 or refused:
        print("holding", n, flush=True)
        time.sleep(0.2)
    try:
        pid = os.fork()
    except OSError as e:
        refused = e.errno
        continue
    if pid == 0:
        fd = os.open("/dev/null", os.O_RDWR)
        for std in (0, 1, 2):
            os.dup2(fd, std)
        time.sleep(600)
        os._exit(0)
    n += 1
print("forked", n, "refused", refused)
PY"""
@pytest.fixture
def daemon(start_ashd: object) -> AshdProcess:
    started: AshdProcess = start_ashd(None)  # type: ignore[operator]
    return started


@pytest.fixture
def session(daemon: AshdProcess) -> Iterator[tuple[httpx.Client, str]]:
    with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=60) as c:
        c.post("/api/agents", json={"name": "hello", "path": str(HELLO_AGENT)}).raise_for_status()
        resp = c.post("/api/sessions", json={"agent": "hello"})
        assert resp.status_code == 201, resp.text
        sid = str(resp.json()["session"]["id"])
        try:
            yield c, sid
        finally:
            for pid in sandbox_pids(daemon, sid):
                if MARKER in cmdline(pid):
                    os.kill(pid, signal.SIGKILL)


def test_a_fork_bomb_ends_in_a_tool_result_and_the_agent_lives(
        daemon: AshdProcess, session: tuple[httpx.Client, str]) -> None:
    c, sid = session
    assert answer(turn(c, sid, "[[say: up]]")) == "up"
    cli = cli_pid(daemon, sid)

    events = turn(c, sid, f"[[bash: {BOMB}]] [[say: bomb-turn-over]]")
    results = [d for n, d in events if n == "tool_result"]
    assert results and "refused 11" in str(results[-1]["content"]), events
    assert not [d for n, d in events if n == "error"], events
    assert answer(events) == "bomb-turn-over"
    sleepers = [p for p in sandbox_pids(daemon, sid) if MARKER in cmdline(p)]
    assert len(sleepers) > 100, len(sleepers)  # the bomb's children still hold their tasks

    events = turn(c, sid, "[[bash: echo tool-while-full]] [[say: still-alive]]")
    assert answer(events) == "still-alive" and not [d for n, d in events if n == "error"], events
    assert cli_pid(daemon, sid) == cli, "the agent's CLI was replaced: the bomb took it down"
