"""Fault injection (issue #10 item 7): crash each long-lived actor and each kind of child of a
real daemon under load, over HTTP, and show that ashd recovers.

For each fault, with two sessions running slow turns: the affected turns end with ``error``
then ``done``; a new request succeeds within a few seconds (no permanent 503); no bridge is
leaked (every bridge process is one the pool counts, the old ones are dead); the next
message of every session works; /health, /metrics and ``ashctl doctor`` show the restarts.
Faults go through the test-only hook ``POST /api/internal/faults`` (a tell that raises
inside the named actor, like a real bug); the bridge is killed with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import HELLO_AGENT
from tests.e2e.test_ashctl import ashctl
from tests.support.daemon import AshdProcess, is_bridge, sse_events
from tests.support.sandboxes import alive, bridge_pid, cmdline, sandbox_pids

pytestmark = pytest.mark.e2e

SECRET = "fault-test-internal-secret"
RECOVERY_S = 15.0  # "within a few seconds": restarts back off 0.2-0.4 s, a cold start takes a few more
LONG_TEXT = " ".join(f"word{i}" for i in range(200))
SLOW_TURN = f"[[slow: 60]] [[say: {LONG_TEXT}]]"  # about 12 s of streaming


@pytest.fixture
def faulty(start_ashd: Callable[..., AshdProcess], database_url: str | None) -> AshdProcess:
    return start_ashd(database_url, ASH_FAULT_INJECTION="1", ASH_INTERNAL_SECRET=SECRET)


@pytest.fixture
def faulty_sqlite(start_ashd: Callable[..., AshdProcess]) -> AshdProcess:
    return start_ashd(None, ASH_FAULT_INJECTION="1", ASH_INTERNAL_SECRET=SECRET)


@pytest.fixture
def api(faulty: AshdProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=faulty.url, headers=faulty.headers, timeout=120) as client:
        yield client


def inject(daemon: AshdProcess, target: str, session_id: str | None = None) -> None:
    body = {"target": target, **({"sessionId": session_id} if session_id else {})}
    resp = httpx.post(f"{daemon.url}/api/internal/faults", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {SECRET}"})
    assert resp.status_code == 202, resp.text


def bridges(daemon: AshdProcess) -> set[int]:
    """Running bridge processes of this daemon."""
    return {p.pid for p in daemon.descendants() if is_bridge(cmdline(p.pid)) and alive(p.pid)}


class RunningTurn:
    """A slow turn streamed on its own thread; ``streaming`` is set at its first text delta."""

    def __init__(self, client: httpx.Client, session_id: str) -> None:
        self.streaming = threading.Event()
        self.body: list[str] = []
        self.thread = threading.Thread(target=self._run, args=(client, session_id))
        self.thread.start()

    def _run(self, client: httpx.Client, session_id: str) -> None:
        with client.stream("POST", f"/api/sessions/{session_id}/messages",
                           json={"content": SLOW_TURN, "includePartialMessages": True}) as r:
            for chunk in r.iter_text():
                self.body.append(chunk)
                if "text_delta" in chunk:
                    self.streaming.set()

    def names(self) -> list[str]:
        self.thread.join(120)
        assert not self.thread.is_alive(), "the turn never ended"
        return [name for name, _ in sse_events("".join(self.body))]


def finished_well(turn: RunningTurn) -> bool:
    names = turn.names()
    return names[-1] == "done" and "error" not in names and "word199" in "".join(turn.body)


def setup_sessions(api: httpx.Client, count: int = 2) -> list[str]:
    api.post("/api/agents", json={"name": "hello", "path": str(HELLO_AGENT)}).raise_for_status()
    sids = [api.post("/api/sessions", json={"agent": "hello"}).json()["session"]["id"] for _ in range(count)]
    for sid in sids:
        assert answer(api, sid, "[[say: warm]]") == "warm"
    return sids


def answer(api: httpx.Client, sid: str, content: str) -> str:
    with api.stream("POST", f"/api/sessions/{sid}/messages", json={"content": content}) as r:
        assert r.status_code == 200, r.read()
        events = sse_events(r.read().decode())
    done = [data for name, data in events if name == "turn_complete"]
    assert done, events
    return str(done[-1]["result"])


def under_load(api: httpx.Client, sids: list[str]) -> list[RunningTurn]:
    turns = [RunningTurn(api, sid) for sid in sids]
    for turn in turns:
        assert turn.streaming.wait(60), "the turn did not start streaming"
    return turns


def recovers(api: httpx.Client, sid: str, marker: str) -> float:
    """Seconds until a new message on ``sid`` gets its answer (503s retried meanwhile)."""
    began = time.monotonic()
    while True:
        with api.stream("POST", f"/api/sessions/{sid}/messages", json={"content": f"[[say: {marker}]]"}) as r:
            status, raw = r.status_code, r.read().decode()
        if status == 200:
            events = sse_events(raw)
            done = [data for name, data in events if name == "turn_complete"]
            if done and done[-1]["result"] == marker:
                return time.monotonic() - began
        assert status in (200, 503), (status, raw)
        assert time.monotonic() - began < RECOVERY_S, f"still failing after {RECOVERY_S}s: {status} {raw[:500]}"
        time.sleep(0.2)


def health(api: httpx.Client) -> dict[str, Any]:
    """/health with a key; a 503 while the pool restarts is retried (for a few seconds only)."""
    deadline = time.monotonic() + RECOVERY_S
    while (resp := api.get("/health")).status_code == 503 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def sandboxed(daemon: AshdProcess, sids: list[str]) -> set[int]:
    """Every process in these sessions' sandbox cgroups (the CLI and what it started)."""
    return set().union(*(sandbox_pids(daemon, sid) for sid in sids))


def no_leaked_bridge(daemon: AshdProcess, api: httpx.Client, old: set[int], sids: list[str]) -> None:
    """The old bridges and every process of their sandboxes' cgroups are dead; every running
    bridge is one the pool counts, one per session."""
    deadline = time.monotonic() + 15
    while (still := {pid for pid in old if alive(pid)}) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not still, [cmdline(pid) for pid in still]
    running = bridges(daemon)
    assert len(running) == health(api)["pool"]["total"] == len(sids), [cmdline(pid) for pid in running]
    assert {bridge_pid(daemon, sid) for sid in sids} == running  # exactly one per session


def metric(api: httpx.Client, line_start: str) -> float:
    text = api.get("/metrics").text
    return float(next(line for line in text.splitlines() if line.startswith(line_start)).split()[-1])


def test_pool_crash_under_load_restarts_the_pool_and_the_session_supervisor(
        faulty: AshdProcess, api: httpx.Client) -> None:
    sids = setup_sessions(api)
    old = bridges(faulty)
    assert len(old) == 2
    turns = under_load(api, sids)
    old |= sandboxed(faulty, sids)
    assert len(old) > 2  # the CLIs, in the sandboxes' cgroups
    inject(faulty, "pool")
    for turn in turns:
        assert turn.names()[-2:] == ["error", "done"]
    for i, sid in enumerate(sids):
        recovers(api, sid, f"after-{i}")
    no_leaked_bridge(faulty, api, old, sids)
    supervision = health(api)["supervision"]
    assert supervision["restarts"]["pool"] == 1
    assert supervision["restarts"]["sessions"] == 1  # rest_for_one: it owned the pool's sandboxes
    assert supervision["failedChildren"] == [] and supervision["gaveUp"] is None
    assert metric(api, 'ashd_actor_restarts_total{child="pool"}') == 1
    doctor = ashctl(faulty, "doctor")
    assert "supervision: restarts:" in doctor.stdout and "pool 1" in doctor.stdout, doctor.stdout
    assert "FAILED" not in doctor.stdout
    assert "pool crashed (InjectedFault" in faulty.log(None)


def test_session_supervisor_crash_releases_its_sandboxes_and_comes_back(
        faulty_sqlite: AshdProcess) -> None:
    daemon = faulty_sqlite
    with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=120) as api:
        sids = setup_sessions(api)
        old = bridges(daemon)
        turns = under_load(api, sids)
        old |= sandboxed(daemon, sids)
        assert len(old) > 2
        inject(daemon, "sessions")
        for turn in turns:
            assert turn.names()[-2:] == ["error", "done"]
        for i, sid in enumerate(sids):
            recovers(api, sid, f"after-{i}")
        no_leaked_bridge(daemon, api, old, sids)
        supervision = health(api)["supervision"]
        assert (supervision["restarts"]["sessions"], supervision["restarts"]["pool"]) == (1, 0)


def test_session_actor_crash_mid_turn_ends_only_its_turn(faulty_sqlite: AshdProcess) -> None:
    daemon = faulty_sqlite
    with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=120) as api:
        sids = setup_sessions(api)
        victim, bystander = sids
        old_victim = bridge_pid(daemon, victim)
        bystander_bridge = bridge_pid(daemon, bystander)
        turns = under_load(api, sids)
        victim_sandbox = sandboxed(daemon, [victim])
        assert victim_sandbox
        inject(daemon, "session", victim)
        assert turns[0].names()[-2:] == ["error", "done"]
        assert finished_well(turns[1])  # the other session never noticed
        recovers(api, victim, "after")
        no_leaked_bridge(daemon, api, {old_victim, *victim_sandbox}, sids)
        assert bridge_pid(daemon, bystander) == bystander_bridge
        assert health(api)["supervision"]["restarts"]["session"] == 1
        assert api.get(f"/api/sessions/{victim}").json()["session"]["status"] == "active"


def test_sandbox_actor_crash_mid_turn_kills_its_bridge_and_the_session_goes_on(
        faulty_sqlite: AshdProcess) -> None:
    daemon = faulty_sqlite
    with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=120) as api:
        sids = setup_sessions(api)
        old = bridge_pid(daemon, sids[0])
        turns = under_load(api, sids)
        old_sandbox = sandboxed(daemon, [sids[0]])
        assert old_sandbox
        inject(daemon, "sandbox", sids[0])
        assert turns[0].names()[-2:] == ["error", "done"]
        assert finished_well(turns[1])
        recovers(api, sids[0], "after")
        no_leaked_bridge(daemon, api, {old, *old_sandbox}, sids)


def test_bridge_sigkill_under_load_leaks_nothing(faulty_sqlite: AshdProcess) -> None:
    daemon = faulty_sqlite
    with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=120) as api:
        sids = setup_sessions(api)
        old = bridge_pid(daemon, sids[1])
        turns = under_load(api, sids)
        old_sandbox = sandboxed(daemon, [sids[1]])
        assert old_sandbox
        os.kill(old, signal.SIGKILL)
        assert turns[1].names()[-2:] == ["error", "done"]
        assert finished_well(turns[0])
        recovers(api, sids[1], "after")
        no_leaked_bridge(daemon, api, {old, *old_sandbox}, sids)


def test_a_pool_that_keeps_crashing_makes_ashd_exit_non_zero(faulty_sqlite: AshdProcess) -> None:
    daemon = faulty_sqlite
    with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=120) as api:
        setup_sessions(api, count=1)
        old = bridges(daemon)
        for restarts in range(1, 4):  # three restarts within a minute are allowed...
            inject(daemon, "pool")
            deadline = time.monotonic() + RECOVERY_S
            while health(api)["supervision"]["restarts"]["pool"] < restarts:
                assert time.monotonic() < deadline, "the pool was not restarted"
                time.sleep(0.1)
        inject(daemon, "pool")  # ...the fourth crash is one too many
    assert daemon.proc is not None
    assert daemon.proc.wait(timeout=120) == 3  # EXIT_TREE_FAILED: systemd's Restart=on-failure
    log = daemon.log(None)
    assert "supervision tree gives up: pool crashed too often" in log
    assert old and not any(alive(pid) for pid in old)


def test_the_fault_route_does_not_exist_unless_enabled(start_ashd: Callable[..., AshdProcess]) -> None:
    daemon = start_ashd(None, ASH_INTERNAL_SECRET=SECRET)
    resp = httpx.post(f"{daemon.url}/api/internal/faults", json={"target": "pool"}, headers=daemon.headers,
                      timeout=30)
    assert resp.status_code == 404, resp.text  # not a route at all (with the secret: 401, like any path)
    assert "FAULT INJECTION IS ON" not in daemon.log(None)


def test_the_fault_route_needs_the_internal_secret(faulty_sqlite: AshdProcess) -> None:
    resp = httpx.post(f"{faulty_sqlite.url}/api/internal/faults", json={"target": "pool"},
                      headers=faulty_sqlite.headers, timeout=30)  # an admin API key is not enough
    assert resp.status_code == 401
    assert "FAULT INJECTION IS ON" in faulty_sqlite.log(None)
    with httpx.Client(base_url=faulty_sqlite.url, headers=faulty_sqlite.headers, timeout=30) as api:
        assert health(api)["supervision"]["restarts"]["pool"] == 0


def test_pre_warmed_sandboxes_come_back_after_the_session_supervisor_restarts(faulty_sqlite: AshdProcess) -> None:
    daemon = faulty_sqlite
    with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=120) as api:
        api.post("/api/agents", json={"name": "hello", "path": str(HELLO_AGENT)}).raise_for_status()
        api.patch("/api/agents/hello/config", json={"preWarmCount": 1}).raise_for_status()

        def warm_bridges() -> set[int]:
            deadline = time.monotonic() + 60
            while health(api)["pool"]["warm"] != 1 or len(running := bridges(daemon)) != 1:
                assert time.monotonic() < deadline, health(api)["pool"]
                time.sleep(0.2)
            return running

        before = warm_bridges()
        inject(daemon, "sessions")
        deadline = time.monotonic() + RECOVERY_S
        while any(alive(pid) for pid in before):  # the old supervisor's pre-warm had no owner left
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert warm_bridges().isdisjoint(before)  # a new one, started by the new supervisor
        assert api.post("/api/sessions", json={"agent": "hello"}).status_code == 201
        assert health(api)["pool"]["preWarmHits"] == 1
