"""Issue #17: idle sessions park (no CLI, no bridge), wake with their conversation and files,
and the warm cap bounds live CLIs. Real daemon, real CLI, real bwrap, the scripted model."""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from ashd.scripted.server import ScriptedModel
from tests.conftest import HELLO_AGENT
from tests.store.pg import backend_database
from tests.support.daemon import REPO, AshdProcess, sse_events
from tests.support.sandboxes import alive, answer, bridge_pid, cli_pid, cmdline, sandbox_pids, turn

pytestmark = pytest.mark.e2e

PARK_ENV = {"ASH_PARK_AFTER_MS": "1500"}


def runtime(c: httpx.Client, sid: str) -> tuple[str, str]:
    row = c.get(f"/api/sessions/{sid}").json()["session"]
    return row["status"], row["runtime"]


def wait_until(check: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def metric(c: httpx.Client, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", c.get("/metrics").text, re.M)
    assert found, name
    return float(found.group(1))


def sandbox_clis(daemon: AshdProcess, sids: list[str]) -> dict[str, list[int]]:
    """Session id -> the live Claude CLIs in its sandbox (see :func:`first_clis`)."""
    found: dict[str, list[int]] = {}
    for sid in sids:
        procs = {}
        for pid in sandbox_pids(daemon, sid):
            if cmdline(pid).startswith("/opt/claude/claude"):
                with contextlib.suppress(psutil.NoSuchProcess):
                    procs[pid] = psutil.Process(pid)
        if clis := first_clis(procs):
            found[sid] = clis
    return found


def user_prompts(model: ScriptedModel) -> list[str]:
    """The text of every user message of each /v1/messages request, one string per request."""
    bodies = [r.body for r in model.requests() if r.method == "POST" and r.path == "/v1/messages"]
    return [str(body.get("messages")) for body in bodies if isinstance(body, dict)]


def stored_turns(c: httpx.Client, sid: str) -> list[list[str]]:
    """Each turn's stored messages (its prompt, then what the agent did) as role:type."""
    turns: list[list[str]] = []
    for m in c.get(f"/api/sessions/{sid}/messages").json()["messages"]:
        if m["role"] == "user":
            turns.append([])
        turns[-1].append(f"{m['role']}:{m['type']}")
    return turns


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_an_idle_session_parks_then_wakes_with_its_history_and_files(
        backend: str, start_ashd: Callable[..., AshdProcess], scripted_model: ScriptedModel) -> None:
    with backend_database(backend) as url:
        daemon = start_ashd(url, **PARK_ENV)
        with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=60) as c:
            c.post("/api/agents", json={"name": "hello", "path": str(HELLO_AGENT)}).raise_for_status()
            sid = c.post("/api/sessions", json={"agent": "hello"}).json()["session"]["id"]
            first = turn(c, sid, "[[bash: echo kappa-7 > note.txt]] [[say: the code word is kappa-7]]")
            assert answer(first) == "the code word is kappa-7"
            assert runtime(c, sid) == ("active", "warm")
            cli, bridge = cli_pid(daemon, sid), bridge_pid(daemon, sid)

            assert wait_until(lambda: runtime(c, sid) == ("active", "parked"))  # Ash's clients see active
            assert wait_until(lambda: not alive(cli) and not alive(bridge), 10)
            assert sandbox_pids(daemon, sid) == set()  # no CLI, bridge or bwrap left
            assert (metric(c, "ashd_parked_sessions"), metric(c, "ashd_warm_sessions")) == (1, 0)
            assert metric(c, "ashd_session_wakes_total") == 0

            before = len(user_prompts(scripted_model))
            woken = turn(c, sid, "[[bash: cat note.txt]] [[echo-history]]")
            assert any(n == "tool_result" and "kappa-7" in d["content"] for n, d in woken)  # files
            assert "the code word is kappa-7" in answer(woken)  # the conversation, as the CLI resumed it
            asked = user_prompts(scripted_model)[before:]
            assert asked and all("echo kappa-7 > note.txt" in prompt for prompt in asked)  # the model saw it
            assert metric(c, "ashd_session_wakes_total") == 1
            assert metric(c, "ashd_session_wake_seconds_count") == 1

            rewake_cli = cli_pid(daemon, sid)
            warm = turn(c, sid, "[[bash: cat note.txt]] [[echo-history]]")  # the next message is warm
            assert cli_pid(daemon, sid) == rewake_cli and metric(c, "ashd_session_wakes_total") == 1
            assert [n for n, _ in warm] == [n for n, _ in woken]  # a wake streams what a warm turn does
            assert runtime(c, sid) == ("active", "warm")

            turns = stored_turns(c, sid)
            assert len(turns) == 3, turns
            assert turns[1] == turns[2] == turns[0], turns  # nothing duplicated (or lost) by the wake
        daemon.stop()


def test_the_warm_cap_holds_and_the_oldest_session_still_answers_with_its_history(
        start_ashd: Callable[..., AshdProcess]) -> None:
    daemon = start_ashd(None, ASH_MAX_WARM_SESSIONS="2")
    sids: list[str] = []
    most: list[Any] = [0, {}]  # the most live CLIs seen at once, and where they were
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            found = sandbox_clis(daemon, list(sids))
            if sum(map(len, found.values())) > most[0]:
                most[:] = [sum(map(len, found.values())), found]
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=60) as c:
        c.post("/api/agents", json={"name": "hello", "path": str(HELLO_AGENT)}).raise_for_status()
        sampler.start()
        try:
            for n in range(4):
                sid = c.post("/api/sessions", json={"agent": "hello"}).json()["session"]["id"]
                sids.append(sid)
                assert answer(turn(c, sid, f"[[say: I am session {n}]]")) == f"I am session {n}"
            assert "I am session 0" in answer(turn(c, sids[0], "[[echo-history]]"))  # woken, parking another
        finally:
            stop.set()
            sampler.join(5)
        assert 1 <= most[0] <= 2, (most, daemon.log())
        rows = [c.get(f"/api/sessions/{sid}").json()["session"] for sid in sids]
        assert {r["status"] for r in rows} == {"active"}
        assert sorted(r["runtime"] for r in rows) == ["parked", "parked", "warm", "warm"]
        assert c.get("/health").json()["pool"]["maxCapacity"] == 2


def test_a_session_mid_turn_is_never_parked(start_ashd: Callable[..., AshdProcess]) -> None:
    daemon = start_ashd(None, ASH_PARK_AFTER_MS="1000")
    with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=60) as c:
        c.post("/api/agents", json={"name": "hello", "path": str(HELLO_AGENT)}).raise_for_status()
        sid = c.post("/api/sessions", json={"agent": "hello"}).json()["session"]["id"]
        turn(c, sid, "[[say: ready]]")
        cli = cli_pid(daemon, sid)
        logged = len(daemon.log(tail=None))
        long = turn(c, sid, "[[sleep: 4000]] [[say: still here]]")  # four park periods inside one turn
        assert answer(long) == "still here" and cli_pid(daemon, sid) == cli
        assert "parking sandbox" not in daemon.log(tail=None)[logged:]
        assert wait_until(lambda: runtime(c, sid) == ("active", "parked"))  # and parked once idle


def _parked_with_a_broken_workspace(c: httpx.Client, daemon: AshdProcess, word: str) -> tuple[str, Path, Path]:
    """A parked session that wrote ``note.txt`` and said ``word``; its workspace is then moved
    aside and replaced by a file, so no sandbox can mount it (the CLI never starts) until the
    caller moves it back. (session id, workspace, where it was moved)."""
    c.post("/api/agents", json={"name": "hello", "path": str(HELLO_AGENT)}).raise_for_status()
    sid = c.post("/api/sessions", json={"agent": "hello"}).json()["session"]["id"]
    turn(c, sid, f"[[bash: echo {word} > note.txt]] [[say: the code word is {word}]]")
    assert wait_until(lambda: runtime(c, sid) == ("active", "parked"))
    workspace = daemon.data_dir / "sandboxes" / sid / "workspace"
    moved = workspace.with_name("workspace.aside")
    workspace.rename(moved)
    workspace.write_text("not a directory")
    return sid, workspace, moved


def test_a_wake_that_fails_ends_the_stream_with_error_and_done(start_ashd: Callable[..., AshdProcess]) -> None:
    daemon = start_ashd(None, ASH_RESTART_INTENSITY="1", ASH_RESTART_BACKOFF_BASE_S="0.1", **PARK_ENV)
    with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=60) as c:
        sid, workspace, moved = _parked_with_a_broken_workspace(c, daemon, "omega-2")

        failed = turn(c, sid, "[[echo-history]]")
        assert [n for n, _ in failed] == ["error", "done"], failed
        assert "could not start" in failed[0][1]["error"] and failed[1][1] == {"sessionId": sid}
        status, _ = runtime(c, sid)  # the restart policy (intensity 1) gave up on it: error, with why
        assert status == "error"

        workspace.unlink()
        moved.rename(workspace)
        assert c.post(f"/api/sessions/{sid}/resume").json()["session"]["status"] == "active"
        again = turn(c, sid, "[[bash: cat note.txt]] [[echo-history]]")
        assert any(n == "tool_result" and "omega-2" in d["content"] for n, d in again)
        assert "the code word is omega-2" in answer(again)
        roles = [m["role"] for m in c.get(f"/api/sessions/{sid}/messages").json()["messages"]]
        assert roles.count("user") == 2  # the failed wake stored nothing


def test_a_wake_that_fails_once_is_retried_in_the_same_stream(start_ashd: Callable[..., AshdProcess]) -> None:
    """Default restart policy: the failed start is retried after its backoff; the message that
    woke the session is answered, with its history, and nothing of the failure is stored."""
    daemon = start_ashd(None, ASH_RESTART_BACKOFF_BASE_S="3", **PARK_ENV)
    with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=60) as c:
        sid, workspace, moved = _parked_with_a_broken_workspace(c, daemon, "zeta-4")
        woken: list[list[tuple[str, object]]] = []
        sender = threading.Thread(target=lambda: woken.append(turn(c, sid, "[[bash: cat note.txt]] [[echo-history]]")))
        sender.start()
        assert wait_until(lambda: re.search(r"agent process failed to start \(.+\): restarting in",
                                            daemon.log(tail=None)) is not None, 60)
        workspace.unlink()
        moved.rename(workspace)  # repaired within the backoff
        sender.join(180)
        assert woken and "the code word is zeta-4" in answer(woken[0]), woken
        assert any(n == "tool_result" and "zeta-4" in str(d) for n, d in woken[0])
        assert runtime(c, sid) == ("active", "warm")
        assert len(stored_turns(c, sid)) == 2


@pytest.mark.parametrize(("variable", "value"), [("ASH_PARK_AFTER_MS", "10"), ("ASH_MAX_WARM_SESSIONS", "0")])
def test_bad_park_settings_are_refused_at_start_naming_the_variable(
        variable: str, value: str, tmp_path: object) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "ASH_DATA_DIR": f"{tmp_path}/data", variable: value}
    done = subprocess.run([sys.executable, "-m", "ashd.cli.daemon"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert variable in done.stderr and f"got {value}" in done.stderr


def park_all(c: httpx.Client, sids: list[str]) -> None:
    for sid in sids:
        assert wait_until(lambda sid=sid: runtime(c, sid) == ("active", "parked"), 30), runtime(c, sid)


def wake_each(daemon: AshdProcess, model: ScriptedModel, sids: list[str], turns_before: int) -> None:
    """Each parked session answers with its files and its whole conversation, once."""
    with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=60) as c:
        for n, sid in enumerate(sids):
            assert runtime(c, sid) == ("active", "parked")
            before = len(user_prompts(model))
            woken = turn(c, sid, "[[bash: cat note.txt]] [[echo-history]]")
            assert any(t == "tool_result" and f"sigma-{n}" in d["content"] for t, d in woken), woken  # files
            assert f"the code word is sigma-{n}" in answer(woken)  # the conversation, resumed
            asked = user_prompts(model)[before:]
            assert asked and all(f"echo sigma-{n} > note.txt" in prompt for prompt in asked)  # the model saw it
            turns = stored_turns(c, sid)
            assert len(turns) == turns_before + 1, turns  # nothing duplicated by the restart
            assert turns[-1] == turns[0], turns  # the same shape as a warm turn's
        park_all(c, sids)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_parked_sessions_wake_with_history_and_files_after_ashd_restarts(
        backend: str, start_ashd: Callable[..., AshdProcess], scripted_model: ScriptedModel) -> None:
    """Parked, then ashd stops (SIGTERM) and starts again on the same data: each session wakes with
    its conversation and files; then parked again and ashd killed (SIGKILL): the same."""
    with backend_database(backend) as url:
        daemon = start_ashd(url, **PARK_ENV)
        with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=60) as c:
            c.post("/api/agents", json={"name": "hello", "path": str(HELLO_AGENT)}).raise_for_status()
            sids = [c.post("/api/sessions", json={"agent": "hello"}).json()["session"]["id"] for _ in range(2)]
            for n, sid in enumerate(sids):
                said = turn(c, sid, f"[[bash: echo sigma-{n} > note.txt]] [[say: the code word is sigma-{n}]]")
                assert answer(said) == f"the code word is sigma-{n}"
            park_all(c, sids)
        assert daemon.stop(signal.SIGTERM) == 0
        daemon = daemon.restarted()
        try:
            wake_each(daemon, scripted_model, sids, 1)
            daemon.stop(signal.SIGKILL)
            daemon = daemon.restarted()
            wake_each(daemon, scripted_model, sids, 2)
        finally:
            daemon.stop()


LOADED_S = 300  # a request's timeout in the cap tests: CLI starts queue behind each other under load
BIG_WRITE = "[[bash: head -c 24000000 /dev/urandom > big.bin]]"


def live_clis(daemon: AshdProcess) -> int:
    """Claude CLIs alive anywhere beneath the daemon (psutil over its process tree), each once."""
    return len(first_clis({p.pid: p for p in daemon.descendants() if cmdline(p.pid).startswith("/opt/claude/claude")}))


def first_clis(clis: dict[int, psutil.Process]) -> list[int]:
    """The live ones of these Claude CLI processes, less the helpers a CLI forks (they have
    its command line, and under load they live long enough to be seen)."""
    return [pid for pid, p in clis.items() if alive(pid) and _parent(p) not in clis]


def _parent(proc: psutil.Process) -> int | None:
    try:
        return proc.ppid()
    except psutil.Error:
        return None


def until_served(c: httpx.Client, send: Callable[[], httpx.Response], deadline_s: float = 240) -> httpx.Response:
    """``send()`` again while ashd answers 503 (every warm session busy; under load, a start
    that waited too long), as Retry-After says."""
    deadline = time.monotonic() + deadline_s
    while True:
        r = send()
        if r.status_code != 503 or time.monotonic() > deadline:
            return r
        assert int(r.headers["Retry-After"]) >= 1, r.text
        time.sleep(0.5)


def message(c: httpx.Client, sid: str, content: str) -> httpx.Response:
    return c.post(f"/api/sessions/{sid}/messages", json={"content": content}, timeout=LOADED_S)


@pytest.mark.timeout(900)  # many CLI starts and snapshots on a shared 2-core machine
def test_the_cap_holds_strictly_under_concurrent_wakes_creates_and_parking(
        start_ashd: Callable[..., AshdProcess]) -> None:
    """Cap 2: three parked sessions woken and three new ones created, all at once, while the
    sweep parks; a sampler of the daemon's process tree never sees a third CLI. Each turn
    writes 24 MB that do not compress: a session being parked keeps its CLI while that is
    snapshotted (seconds), the window in which a start must not count it as gone."""
    daemon = start_ashd(None, ASH_MAX_WARM_SESSIONS="2", ASH_PARK_AFTER_MS="1000")
    most, samples, stop = [0], [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            most[0] = max(most[0], live_clis(daemon))
            samples[0] += 1

    with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=LOADED_S) as c:
        c.post("/api/agents", json={"name": "hello", "path": str(HELLO_AGENT)}).raise_for_status()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        parked: list[str] = []
        for n in range(3):
            sid = until_served(c, lambda: c.post("/api/sessions", json={"agent": "hello"})).json()["session"]["id"]
            assert answer(turn(c, sid, f"[[say: parked one {n}]]")) == f"parked one {n}"
            parked.append(sid)
        park_all(c, parked)
        results: dict[str, str] = {}

        def wake(n: int) -> None:
            r = until_served(c, lambda: message(c, parked[n], f"{BIG_WRITE} [[echo-history]]"))
            results[f"wake {n}"] = answer(sse_events(r.text)) if r.status_code == 200 else r.text

        def create(n: int) -> None:
            r = until_served(c, lambda: c.post("/api/sessions", json={"agent": "hello"}))
            if r.status_code != 201:
                results[f"create {n}"] = r.text
                return
            sid = r.json()["session"]["id"]
            r = until_served(c, lambda: message(c, sid, f"{BIG_WRITE} [[say: new one {n}]]"))
            results[f"create {n}"] = answer(sse_events(r.text)) if r.status_code == 200 else r.text

        workers = [threading.Thread(target=wake, args=(n,)) for n in range(3)]
        workers += [threading.Thread(target=create, args=(n,)) for n in range(3)]
        try:
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join(2 * LOADED_S)
        finally:
            stop.set()
            sampler.join(10)
        assert samples[0] > 10 and 1 <= most[0] <= 2, (most[0], samples[0])
        for n in range(3):
            assert f"parked one {n}" in results[f"wake {n}"], results  # each woke with its history
            assert results[f"create {n}"] == f"new one {n}", results


@pytest.mark.timeout(900)  # many CLI starts and snapshots on a shared 2-core machine
def test_prewarmed_sandboxes_count_against_the_cap_and_never_park_a_session(
        start_ashd: Callable[..., AshdProcess]) -> None:
    """Cap 2 with two pre-warms per agent: the pre-warms fill the cap; sessions claim them; a
    pre-warm is never made by parking a session, and live CLIs never exceed the cap."""
    daemon = start_ashd(None, ASH_MAX_WARM_SESSIONS="2", ASH_PREWARM_PER_AGENT="2")
    most, stop = [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            most[0] = max(most[0], live_clis(daemon))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=LOADED_S) as c:
            c.post("/api/agents", json={"name": "hello", "path": str(HELLO_AGENT)}).raise_for_status()
            # The two pre-warms, started and ready to be claimed (a CLI is alive well before its
            # bridge is ready; a create before then queues a start of its own, which at the cap
            # finds only starting pre-warms: 503, its message to be retried).
            assert wait_until(lambda: live_clis(daemon) == 2
                              and daemon.log(tail=None).count(" ready for session ") >= 2, 120)
            sids = []
            for n in range(3):
                if n == 2:  # two sessions hold the cap; their claims' replenishing pre-warms were refused
                    assert wait_until(lambda: "no pre-warm at the warm session cap" in daemon.log(tail=None))
                    assert [runtime(c, sid)[1] for sid in sids] == ["warm", "warm"]  # no session parked for one
                sid = until_served(c, lambda: c.post("/api/sessions", json={"agent": "hello"})).json()["session"]["id"]
                assert answer(turn(c, sid, f"[[say: I am session {n}]]")) == f"I am session {n}"
                sids.append(sid)
            assert runtime(c, sids[0]) == ("active", "parked")  # the third session's start parked the oldest
            assert "I am session 0" in answer(turn(c, sids[0], "[[echo-history]]"))
    finally:
        stop.set()
        sampler.join(10)
    assert most[0] == 2, most[0]
