"""Following a session across turns (issue #9 item 4): ``AshdClient.follow`` and ``ashctl
session tail`` print every stored turn, then keep following new turns until the session ends
or Ctrl-C; ``GET /stream?follow=true`` keeps the stream open between turns."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from ashd.client import AshdClient
from ashd.client.events import Done, StreamEvent, TextDelta
from tests.conftest import HELLO_AGENT, REPO
from tests.support.daemon import AshdProcess, sse_frames

pytestmark = pytest.mark.e2e
WAIT_S = 180.0


@pytest.fixture
def daemon(start_ashd: Callable[..., AshdProcess]) -> AshdProcess:
    return start_ashd(None, ASH_SSE_HEARTBEAT_S="1")


def three_turn_session(daemon: AshdProcess) -> tuple[AshdClient, str]:
    client = AshdClient(daemon.url, daemon.key)
    client.deploy_agent("hello", path=str(HELLO_AGENT))
    sid = str(client.create_session("hello")["id"])
    for word in ("first", "second", "third"):
        list(client.send_message(sid, f"[[say: turn-{word}]]"))
    return client, sid


def test_follow_prints_every_stored_turn_then_a_new_one_then_ends_with_the_session(daemon: AshdProcess) -> None:
    client, sid = three_turn_session(daemon)
    seen: queue.Queue[StreamEvent] = queue.Queue()
    follower = threading.Thread(target=lambda: [seen.put(e) for e in AshdClient(daemon.url, daemon.key).follow(sid)],
                                daemon=True)
    follower.start()
    events = take_until(seen, dones=3)
    assert text_of(events) == "turn-firstturn-secondturn-third"

    list(client.send_message(sid, "[[say: turn-fourth]]"))  # a turn that starts while following
    events += take_until(seen, dones=1)
    assert text_of(events).endswith("turn-fourth")
    ids = [int(e.id or 0) for e in events]
    assert ids == sorted(set(ids))  # each event once, in order

    client.end_session(sid)
    follower.join(WAIT_S)
    assert not follower.is_alive()  # the session ended, so did the follow


def test_the_follow_stream_stays_open_between_turns(daemon: AshdProcess) -> None:
    client, sid = three_turn_session(daemon)
    with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=WAIT_S) as http:
        assert http.get(f"/api/sessions/{sid}/stream", params={"follow": "maybe"}).status_code == 400
        body = ""
        with http.stream("GET", f"/api/sessions/{sid}/stream", params={"follow": "true"}) as resp:
            chunks = resp.iter_text()
            while body.count("event: done") < 3:
                body += next(chunks)
            while ": keep-alive" not in body.split("event: done")[-1]:  # idle, still open
                body += next(chunks)
            sender = threading.Thread(target=lambda: list(client.send_message(sid, "[[say: turn-fourth]]")))
            sender.start()
            while body.count("event: done") < 4:
                body += next(chunks)
            sender.join(WAIT_S)
    names = [name for _, name, _ in sse_frames(body)]
    assert names.count("done") == 4 and "turn-fourth" in body


def test_ashctl_tail_prints_all_turns_and_keeps_following_until_ctrl_c(daemon: AshdProcess) -> None:
    client, sid = three_turn_session(daemon)
    env = {"PATH": os.environ["PATH"], "ASH_SERVER_URL": daemon.url, "ASH_DATA_DIR": str(daemon.data_dir),
           "NO_COLOR": "1"}
    tail = subprocess.Popen([sys.executable, "-m", "ashd.cli.ashctl", "session", "tail", sid], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    lines: queue.Queue[str] = queue.Queue()
    assert tail.stdout is not None
    fd = tail.stdout.fileno()
    chunks = iter(lambda: os.read(fd, 4096), b"")  # text arrives as it is printed: not always whole lines
    threading.Thread(target=lambda: [lines.put(c.decode(errors="replace")) for c in chunks], daemon=True).start()
    try:
        out = read_until(lines, "turn-third")
        assert "turn-first" in out and "turn-second" in out
        list(client.send_message(sid, "[[say: turn-fourth]]"))
        out += read_until(lines, "turn-fourth")
        assert tail.poll() is None  # still following
        tail.send_signal(signal.SIGINT)
        assert tail.wait(WAIT_S) == 130
    finally:
        if tail.poll() is None:
            tail.kill()
            tail.wait()
        tail.stdout.close()
    until_done = subprocess.run([sys.executable, "-m", "ashd.cli.ashctl", "session", "tail", sid, "--until-done"],
                                env=env, cwd=REPO, capture_output=True, text=True, timeout=WAIT_S)
    assert until_done.returncode == 0 and "turn-first" in until_done.stdout
    assert "turn-second" not in until_done.stdout  # the old behaviour: the next done ends it


def take_until(seen: queue.Queue[StreamEvent], dones: int) -> list[StreamEvent]:
    out: list[StreamEvent] = []
    while dones:
        event = seen.get(timeout=WAIT_S)
        out.append(event)
        dones -= isinstance(event, Done)
    return out


def text_of(events: list[StreamEvent]) -> str:
    return "".join(e.delta for e in events if isinstance(e, TextDelta))


def read_until(lines: queue.Queue[str], needle: str) -> str:
    out = ""
    deadline = time.monotonic() + WAIT_S
    while needle not in out:
        out += lines.get(timeout=max(0.1, deadline - time.monotonic()))
    return out
