"""Issue #9.5: no stack traces in normal operation; a busy port stops ashd before it starts.

An ordinary day (deploy, create, send, a concurrent send refused with 409, interrupt, stop,
resume, end, delete, then ashd's own shutdown with a turn still running) must leave ashd's log and every sandbox log
free of tracebacks and error lines: expected failures are one plain line (the access log's
``409 POST ...``), never a stack trace.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from ashd.scripted.server import ScriptedModel
from tests.conftest import HELLO_AGENT, REPO
from tests.support.daemon import AshdProcess

pytestmark = pytest.mark.e2e
SLOW = "[[slow: 30]] [[say: " + " ".join(f"w{i}" for i in range(400)) + "]]"  # ~12 s: outlives a loaded machine
# Lines no normal day may produce, in ashd's log ("<time> ERROR <logger>: ...") or a
# sandbox log ("[bridge] ERROR ...", Python's own "Traceback"/"Exception ignored in").
BAD = re.compile(r"Traceback|Exception in|Exception ignored|\bERROR\b|CRITICAL|Task was destroyed")


def bad_lines(path: Path) -> list[str]:
    return [f"{path.name}: {line}" for line in path.read_text(errors="replace").splitlines() if BAD.search(line)]


def send(c: httpx.Client, sid: str, content: str) -> None:
    with c.stream("POST", f"/api/sessions/{sid}/messages", json={"content": content}) as r:
        assert r.status_code == 200, r.read()
        assert b"event: done" in r.read()


def long_turn(c: httpx.Client, sid: str) -> tuple[threading.Thread, threading.Event, list[str]]:
    """Start a long turn in a thread; the event is set once it streams text."""
    started = threading.Event()
    bodies: list[str] = []

    def run() -> None:
        body = ""
        try:
            with c.stream("POST", f"/api/sessions/{sid}/messages",
                          json={"content": SLOW, "includePartialMessages": True}) as r:
                for chunk in r.iter_text():
                    body += chunk
                    if "text_delta" in body:
                        started.set()
        except httpx.HTTPError:
            pass  # ashd went away mid-turn
        bodies.append(body)

    worker = threading.Thread(target=run)
    worker.start()
    return worker, started, bodies


def interrupted_turn(c: httpx.Client, sid: str) -> None:
    """A long turn; a second send meanwhile is refused (409); then the turn is interrupted."""
    worker, started, bodies = long_turn(c, sid)
    try:
        assert started.wait(120), "the long turn never streamed"
        second = c.post(f"/api/sessions/{sid}/messages", json={"content": "[[say: sneaky]]"})
        assert second.status_code == 409, second.text
        assert c.post(f"/api/sessions/{sid}/interrupt").status_code == 200
    finally:
        worker.join(120)
    assert bodies and "event: done" in bodies[0]


def test_a_normal_day_logs_no_tracebacks(ashd_sqlite: AshdProcess, tmp_path: Path) -> None:
    daemon = ashd_sqlite
    with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=120) as c:
        c.post("/api/agents", json={"name": "hello", "path": str(HELLO_AGENT)}).raise_for_status()
        sid = c.post("/api/sessions", json={"agent": "hello"}).json()["session"]["id"]
        send(c, sid, "[[say: first]]")
        interrupted_turn(c, sid)
        send(c, sid, "[[bash: echo tool > made.txt]] [[say: after the interrupt]]")
        assert c.post(f"/api/sessions/{sid}/stop").json()["session"]["status"] == "stopped"
        assert c.post(f"/api/sessions/{sid}/resume").json()["session"]["status"] == "active"
        send(c, sid, "[[say: resumed]]")
        assert c.get(f"/api/sessions/{sid}/messages").status_code == 200
        assert c.delete(f"/api/sessions/{sid}").json()["session"]["status"] == "ended"
        assert c.get(f"/api/sessions/{sid}/nope").status_code == 404  # a client mistake, one line
        other = c.post("/api/sessions", json={"agent": "hello"}).json()["session"]["id"]
        worker, started, _ = long_turn(c, other)  # still running when ashd shuts down
        assert started.wait(120), "the last turn never streamed"
        # The ended session's folder (and its sandbox.log) is gone; its lines stay in the ring.
        ended_log = tmp_path / f"{sid}.log"
        ended_log.write_text("".join(line["text"] + "\n" for line in c.get(f"/api/sessions/{sid}/logs").json()["logs"]))
        assert daemon.stop() == 0
        worker.join(120)

    sandbox_logs = [*sorted((daemon.data_dir / "sandboxes").glob("*/sandbox.log")), ended_log]
    assert len(sandbox_logs) == 2 and all("CLI connected" in p.read_text() for p in sandbox_logs)
    log = daemon.log_path.read_text()
    assert "409 POST" in log and "ashd stopped" in log  # the day happened and ended cleanly
    offending = bad_lines(daemon.log_path) + [line for p in sandbox_logs for line in bad_lines(p)]
    assert not offending, "unexpected error lines:\n" + "\n".join(offending)


def test_a_busy_port_stops_ashd_before_it_touches_anything(tmp_path: Path, scripted_model: ScriptedModel) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        data = tmp_path / "data"
        env = AshdProcess(data, scripted_model.base_url, port=port).env
        ran = subprocess.run([sys.executable, "-m", "ashd.cli.daemon"], env=env, cwd=REPO,
                             capture_output=True, text=True, timeout=120)
    out = ran.stdout + ran.stderr
    assert ran.returncode == 1, out
    assert f"port {port}" in out and "ASH_PORT" in out and "--port" in out, out
    assert "Traceback" not in out, out
    assert not data.exists()  # no data dir, so no database, migration or sandbox

