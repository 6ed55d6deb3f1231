"""Any coordinator serves any session's messages (issue #11 item 5): two coordinators on one
Postgres database, one runner, real processes, the real CLI, the scripted model.

A client alternating its messages between coordinators A and B gets every reply, the model
sees the whole conversation each time, and the runner keeps hosting exactly one sandbox for
the session, the same bridge process throughout (each handover adopts it warm); either
coordinator's stream shows every turn. A message through B while A runs a turn is refused
with the same 409 a second concurrent message gets from one daemon, at once. A killed with
SIGKILL: the next message through B works (its lease was freed with A's connection; the
runner stopped A's sandbox when A's link closed, so B starts one cold, with the conversation
from the database and the files from the snapshot).
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from ashd.sandbox import reaper
from tests.conftest import HELLO_AGENT
from tests.e2e.test_remote_sessions import bridges_of, shared_blobs
from tests.e2e.test_runners import FAST, Cluster, cluster, pg_url, runners, wait_for  # noqa: F401 (fixtures)
from tests.snapshot.conftest import s3_bucket, s3_client, s3_endpoint  # noqa: F401 (fixtures)
from tests.support.daemon import AshdProcess, sse_events
from tests.support.sandboxes import instance
from tests.support.turns import StreamedTurn

pytestmark = pytest.mark.e2e

KEY = "ash_adoption_admin_key"
HEADERS = {"Authorization": f"Bearer {KEY}"}
TIMEOUT_S = 180.0


def send(daemon: AshdProcess, sid: str, content: str) -> list[tuple[str, Any]]:
    with httpx.stream("POST", f"{daemon.url}/api/sessions/{sid}/messages", headers=HEADERS, timeout=TIMEOUT_S,
                      json={"content": content}) as resp:
        assert resp.status_code == 200, resp.read()
        events = sse_events(resp.read().decode())
    names = [name for name, _ in events]
    assert names[-1] == "done" and "error" not in names, events[-3:]
    return events


def result(events: list[tuple[str, Any]]) -> str:
    return str(next(d for n, d in events if n == "turn_complete")["result"])


def pair(cluster: Cluster, blobs: dict[str, str]) -> tuple[AshdProcess, AshdProcess, AshdProcess]:  # noqa: F811
    env = {"ASH_API_KEY": KEY, **blobs}
    a, b = cluster.coordinator(**env), cluster.coordinator(**env)
    runner = cluster.runner(f"{a.url},{b.url}", "r1", **FAST, **blobs)
    for daemon in (a, b):
        wait_for("r1 linked", lambda d=daemon: runners(d).get("r1", {}).get("alive"))
    return a, b, runner


def create(a: AshdProcess) -> str:
    with httpx.Client(base_url=a.url, headers=HEADERS, timeout=TIMEOUT_S) as api:
        assert api.post("/api/agents", json={"name": "hello", "path": str(HELLO_AGENT)}).status_code == 201
        made = wait_for("a session placed on r1 (the link is up)",
                        lambda: (r := api.post("/api/sessions", json={"agent": "hello"})).status_code == 201 and r)
    session = made.json()["session"]
    assert session["runnerId"] == "r1"
    return str(session["id"])


def bridge_pids(runner: AshdProcess) -> list[int]:
    return [p.pid for p in bridges_of(runner)]


def test_messages_alternating_between_coordinators_share_one_warm_sandbox(
        cluster: Cluster, s3_endpoint: str, s3_bucket: str) -> None:  # noqa: F811
    a, b, runner = pair(cluster, shared_blobs(s3_endpoint, s3_bucket))
    sid = create(a)
    prompts = ["[[say: alpha reply]]", "[[echo-history]] bravo", "[[echo-history]] charlie",
               "[[echo-history]] delta"]
    pids: list[list[int]] = []
    for i, (daemon, prompt) in enumerate(zip((a, b, a, b), prompts, strict=True)):
        events = send(daemon, sid, prompt)
        if i == 0:
            assert result(events) == "alpha reply"
        else:  # the model sees every earlier prompt, whichever coordinator carried it
            assert result(events) == "history: " + " | ".join(prompts[:i + 1]), result(events)
        pids.append(bridge_pids(runner))
    assert all(p == pids[0] for p in pids) and len(pids[0]) == 1, pids  # one sandbox, the same bridge: warm
    assert not bridges_of(a) and not bridges_of(b)
    for daemon in (a, b):
        session = httpx.get(f"{daemon.url}/api/sessions/{sid}", headers=HEADERS, timeout=30).json()["session"]
        assert session["runnerId"] == "r1" and session["status"] == "active", session
        stream = sse_events(httpx.get(f"{daemon.url}/api/sessions/{sid}/stream", headers=HEADERS,
                                      timeout=TIMEOUT_S).text)
        assert [n for n, _ in stream].count("done") == 4
        texts = [d["result"] for n, d in stream if n == "turn_complete"]
        assert texts[0] == "alpha reply" and texts[-1].endswith("delta"), texts
    assert "adopted" in b.log(None) and "handed its live sandbox" in a.log(None)
    handed = {d: re.search(r'^ashd_session_handovers_total\{answer="released"\} (\S+)$', httpx.get(
        f"{d.url}/metrics", headers=HEADERS, timeout=30).text, re.M) for d in (a, b)}
    assert {d: float(m.group(1)) if m else None for d, m in handed.items()} == {a: 2.0, b: 1.0}  # A→B, B→A, A→B
    # The runner metered each turn once, up the link of the coordinator that owned the sandbox
    # then: recorded once (by the owner only), whichever coordinator is asked.
    def usage(daemon: AshdProcess) -> int:
        stats = httpx.get(f"{daemon.url}/api/usage/stats", params={"sessionId": sid}, headers=HEADERS,
                          timeout=30).json()["stats"]
        return int(stats["totalMessages"])

    wait_for("every turn's usage recorded", lambda: usage(a) >= 4)
    time.sleep(1.0)  # a second record of any of them would have landed by now
    assert usage(a) == usage(b) == 4


def test_a_message_through_b_while_a_runs_a_turn_is_refused_at_once_then_b_takes_over_when_a_dies(
        cluster: Cluster, s3_endpoint: str, s3_bucket: str) -> None:  # noqa: F811
    a, b, runner = pair(cluster, shared_blobs(s3_endpoint, s3_bucket))
    sid = create(a)
    send(a, sid, "[[bash: echo kept-across-coordinators > kept.txt && cat kept.txt]]")
    first = bridge_pids(runner)

    on_a = httpx.Client(base_url=a.url, headers=HEADERS, timeout=TIMEOUT_S)
    turn = StreamedTurn(on_a, sid, "[[say: started]] [[sleep: 6000]] [[say: finished]]", timeout_s=TIMEOUT_S)
    assert turn.started.wait(TIMEOUT_S)
    asked_at = time.monotonic()
    refused = httpx.post(f"{b.url}/api/sessions/{sid}/messages", headers=HEADERS, timeout=TIMEOUT_S,
                         json={"content": "[[say: too early]]"})
    took = time.monotonic() - asked_at
    on_one_daemon = httpx.post(f"{a.url}/api/sessions/{sid}/messages", headers=HEADERS, timeout=TIMEOUT_S,
                               json={"content": "[[say: too early]]"})
    assert refused.status_code == on_one_daemon.status_code == 409, refused.text
    assert refused.json() == on_one_daemon.json()  # the same answer as a second message on one daemon
    assert took < 5.0, f"B took {took:.1f}s to refuse"  # the holder's answer, not a timeout (10 s)
    got = sse_events(turn.join(TIMEOUT_S))
    on_a.close()
    assert [n for n, _ in got][-1] == "done" and "error" not in [n for n, _ in got]
    assert bridge_pids(runner) == first  # the refused message changed nothing

    a.stop(signal.SIGKILL)
    wait_for("the runner stopped A's sandbox (its link closed)", lambda: not bridges_of(runner))
    events = send(b, sid, "[[echo-history]] after the kill")
    assert "kept.txt" in result(events) and "after the kill" in result(events)  # the conversation, cold
    kept = send(b, sid, "[[bash: cat kept.txt]]")
    assert any(n == "tool_result" and "kept-across-coordinators" in d["content"] for n, d in kept), kept
    assert len(bridge_pids(runner)) == 1 and bridge_pids(runner) != first


def test_a_coordinator_that_loses_its_lease_connection_lets_its_sessions_go(
        cluster: Cluster, s3_endpoint: str, s3_bucket: str) -> None:  # noqa: F811
    a, b, runner = pair(cluster, shared_blobs(s3_endpoint, s3_bucket))
    sid = create(a)
    send(a, sid, "[[say: before the cut]]")
    first = bridge_pids(runner)
    a_id = httpx.get(f"{a.url}/health", headers=HEADERS, timeout=30).json()["coordinatorId"]

    on_a = httpx.Client(base_url=a.url, headers=HEADERS, timeout=TIMEOUT_S)
    turn = StreamedTurn(on_a, sid, "[[say: started]] [[sleep: 30000]] [[say: never]]", timeout_s=TIMEOUT_S)
    assert turn.started.wait(TIMEOUT_S)
    engine = sa.create_engine(cluster.database_url)
    with engine.connect() as conn:  # A's lease connection drops (as in a network fault)
        killed = conn.execute(sa.text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                      "WHERE application_name = :name"), {"name": f"ashd-lease {a_id}"}).scalar()
        conn.commit()
    engine.dispose()
    assert killed == 1
    got = sse_events(turn.join(60))  # A fences: the turn it ran under the lost lease ends at once, not after 30 s
    on_a.close()
    assert [n for n, _ in got][-2:] == ["error", "done"], got[-3:]
    wait_for("A's sandbox stopped on the runner", lambda: first[0] not in bridge_pids(runner))
    events = send(b, sid, "[[echo-history]] after the cut")
    assert "before the cut" in result(events)  # B took the session over, cold, with its conversation


def test_two_coordinators_and_two_runners_lose_nothing_when_the_sessions_runner_is_killed(
        cluster: Cluster, s3_endpoint: str, s3_bucket: str) -> None:  # noqa: F811
    """Issue #11's deployment: two coordinators, two runners, one Postgres, one blob store. The
    client alternates coordinators; the session's runner is SIGKILLed; the session resumes on
    the other runner through either coordinator with its whole conversation and its files,
    and every message and stream event is stored once, in order."""
    blobs = shared_blobs(s3_endpoint, s3_bucket)
    a, b, _ = pair(cluster, blobs)
    cluster.runner(f"{a.url},{b.url}", "r2", **FAST, **blobs)
    for daemon in (a, b):
        wait_for("r2 linked", lambda d=daemon: runners(d).get("r2", {}).get("alive"))
    sid = create(a)
    send(a, sid, "[[bash: echo kept-on-the-runner > kept.txt && cat kept.txt]]")
    send(b, sid, "[[say: through b]]")
    send(a, sid, "[[say: through a again]]")
    hosts = {d.env["ASH_RUNNER_ID"]: d for d in cluster.started if d.env.get("ASH_MODE") == "runner"}
    first = httpx.get(f"{b.url}/api/sessions/{sid}", headers=HEADERS, timeout=30).json()["session"]["runnerId"]
    other = next(r for r in hosts if r != first)
    hosts[first].stop(signal.SIGKILL)

    def status() -> str:
        return str(httpx.get(f"{b.url}/api/sessions/{sid}", headers=HEADERS, timeout=30).json()["session"]["status"])

    wait_for(f"{first} swept and the session paused", lambda: status() == "paused")
    resumed = wait_for("the session resumed through B", lambda: (r := httpx.post(
        f"{b.url}/api/sessions/{sid}/resume", headers=HEADERS, timeout=TIMEOUT_S)).status_code != 503 and r)
    assert resumed.status_code == 200 and resumed.json()["session"]["runnerId"] == other, resumed.text
    history = result(send(a, sid, "[[echo-history]] after the kill"))  # and on through A: a handover
    assert "through b" in history and "through a again" in history and "kept.txt" in history, history
    kept = send(b, sid, "[[bash: cat kept.txt]]")
    assert any(n == "tool_result" and "kept-on-the-runner" in d["content"] for n, d in kept), kept
    assert httpx.get(f"{a.url}/api/sessions/{sid}", headers=HEADERS, timeout=30).json()["session"]["runnerId"] == other

    # Nothing lost or doubled: five user messages stored once each, stream ids 1..N without a gap.
    messages = httpx.get(f"{a.url}/api/sessions/{sid}/messages", headers=HEADERS, timeout=30).json()["messages"]
    prompts = ["[[bash: echo kept-on-the-runner > kept.txt && cat kept.txt]]", "[[say: through b]]",
               "[[say: through a again]]", "[[echo-history]] after the kill", "[[bash: cat kept.txt]]"]
    stored = [str(m["content"]) for m in messages if m["type"] == "user"]
    assert [sum(1 for c in stored if p in c) for p in prompts] == [1] * 5, stored
    ids = [int(line[4:]) for line in httpx.get(f"{b.url}/api/sessions/{sid}/stream", headers=HEADERS,
                                               timeout=TIMEOUT_S).text.splitlines() if line.startswith("id: ")]
    assert ids == list(range(ids[0], ids[0] + len(ids))), ids

    # The killed runner, started again on its data dir (as systemd would), first clears what its
    # sandboxes left behind: their mounts, loop devices and run directories.
    killed = hosts[first]
    killed.start(timeout=120)
    mount_root = Path("/run/ashd") / instance(killed)
    mounts = reaper.mount_points(Path("/proc/self/mountinfo").read_text())
    assert reaper.stale_under(mounts, [mount_root]) == [], mount_root
    assert reaper.loops_backed_inside([killed.data_dir]) == []
