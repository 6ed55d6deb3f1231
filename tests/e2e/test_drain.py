"""Draining a runner moves its live sessions at their next idle point (issue #11, item 9): a
coordinator and two runners as real ashd processes on Postgres, snapshots in an S3-compatible
store (moto), the real CLI in the runners' sandboxes, the scripted model.

An idle session moves at once (its sandbox is started ahead on the other runner, so its next
message is warm there) with its conversation and files; a session mid-turn finishes its turn
on the draining runner, then moves; the coordinator learns of the drain from the registry row
(another coordinator may have set it); with no other runner taking sessions nothing moves (said
once); the drained runner ends with no sandbox and ``ashctl runners`` shows it active 0;
undrain lets placements back. Along the way, a turn that changes no file costs no upload: the
runner judges the workspace unchanged.
"""

from __future__ import annotations

import json

import httpx
import pytest

from ashd.store import Store
from ashd.store import runner_queries as rq
from tests.conftest import HELLO_AGENT
from tests.e2e.test_ashctl import ashctl
from tests.e2e.test_remote_sessions import bridges_of, send, shared_blobs
from tests.e2e.test_runners import FAST, Cluster, cluster, pg_url, runners, wait_for  # noqa: F401 (fixtures)
from tests.snapshot.conftest import s3_bucket, s3_client, s3_endpoint  # noqa: F401 (fixtures)
from tests.support.daemon import sse_events
from tests.support.turns import StreamedTurn

pytestmark = pytest.mark.e2e

RUNNER = {**FAST, "ASH_MAX_SANDBOXES": "4"}
GATED = "[[bash: while [ ! -e go ]; do sleep 0.2; done; echo released-b]]"  # a turn that waits for a file


def runner_of(api: httpx.Client, sid: str) -> str:
    return str(api.get(f"/api/sessions/{sid}").json()["session"]["runnerId"])


def create_on(api: httpx.Client, runner: str) -> str:
    made = wait_for(f"a session placed on {runner}",
                    lambda: (r := api.post("/api/sessions", json={"agent": "hello"})).status_code == 201 and r)
    session = made.json()["session"]
    assert session["runnerId"] == runner, session
    return str(session["id"])


def tool_output(api: httpx.Client, sid: str, command: str) -> str:
    return str(next(d for n, d in send(api, sid, f"[[bash: {command}]]") if n == "tool_result")["content"])


def history(api: httpx.Client, sid: str) -> str:
    return str(next(d for n, d in send(api, sid, "[[echo-history]] again") if n == "turn_complete")["result"])


def test_draining_a_runner_moves_idle_sessions_and_busy_ones_after_their_turn(
        cluster: Cluster, s3_endpoint: str, s3_bucket: str) -> None:  # noqa: F811
    blobs = shared_blobs(s3_endpoint, s3_bucket)
    coordinator = cluster.coordinator(**blobs)
    first = cluster.runner(coordinator.url, "r1", **RUNNER, **blobs)
    wait_for("r1 registered", lambda: runners(coordinator).get("r1"))
    with httpx.Client(base_url=coordinator.url, headers=coordinator.headers, timeout=180) as api:
        assert api.post("/api/agents", json={"name": "hello", "path": str(HELLO_AGENT)}).status_code == 201
        idle, busy = create_on(api, "r1"), create_on(api, "r1")
        assert "made-a" in tool_output(api, idle, "echo made-a > a.txt && cat a.txt")
        assert "made-b" in tool_output(api, busy, "echo made-b > b.txt && cat b.txt")

        # r2 comes up drained itself: while r1 drains, no other runner takes sessions.
        second = cluster.runner(coordinator.url, "r2", **RUNNER, **blobs)
        wait_for("r2 registered", lambda: runners(coordinator).get("r2"))
        drained = ashctl(coordinator, "runners", "drain", "r2")
        assert drained.returncode == 0, drained.stderr
        assert "its live sessions move to other runners" in drained.stdout

        turn = StreamedTurn(api, busy, GATED, marker="event: tool_use")
        try:
            assert turn.started.wait(120), "the gated turn never started its tool"
            # r1 drained through the registry row alone, as another coordinator would.
            registry = Store(cluster.database_url)
            try:
                assert registry.write_with(rq.set_draining, "r1", True) is not None
            finally:
                registry.close()
            wait_for("the coordinator saying nothing can move",
                     lambda: "runner r1 drains, but no other runner takes sessions" in coordinator.log(None))
            assert runner_of(api, idle) == "r1"

            # r2 takes sessions again: the idle one moves at once, started ahead on r2.
            assert ashctl(coordinator, "runners", "undrain", "r2").returncode == 0
            wait_for("the idle session moved to r2", lambda: runner_of(api, idle) == "r2")
            wait_for("its sandbox started ahead on r2", lambda: len(bridges_of(second)) == 1)
            assert turn.running() and runner_of(api, busy) == "r1"  # mid-turn: never interrupted
            assert len(bridges_of(first)) == 1

            # The busy one's turn goes on on r1; released, it ends normally, then the session moves.
            ran = api.post(f"/api/sessions/{busy}/exec", json={"command": "touch go"})
            assert ran.status_code == 200, ran.text
            got = sse_events(turn.join(180))
        finally:
            if turn.running():  # release it whatever failed, so the fixture can stop the cluster
                api.post(f"/api/sessions/{busy}/exec", json={"command": "touch go"})
                turn.join(60)
        names = [name for name, _ in got]
        assert names[-1] == "done" and "error" not in names, names
        assert "released-b" in json.dumps([d for n, d in got if n == "tool_result"])
        wait_for("the busy session moved to r2 after its turn", lambda: runner_of(api, busy) == "r2")

        # r1 holds nothing any more, and the operator sees it.
        wait_for("r1's sandboxes gone", lambda: not bridges_of(first))
        wait_for("ashctl runners showing r1 active 0", lambda: next(
            r for r in json.loads(ashctl(coordinator, "runners", "--json").stdout)["runners"]
            if r["runnerId"] == "r1")["active"] == 0)
        wait_for("the coordinator saying r1 is empty", lambda: "runner r1 drains: no session of this coordinator "
                 "is left on it" in coordinator.log(None))

        # Both answer from r2, with their conversation and their files.
        assert "made-a" in history(api, idle) and "made-a" in tool_output(api, idle, "cat a.txt")
        assert "made-b" in history(api, busy) and "made-b" in tool_output(api, busy, "cat b.txt")
        assert runner_of(api, idle) == runner_of(api, busy) == "r2"
        assert len(bridges_of(second)) == 2 and not bridges_of(first)
        # Turns that change no file: once the workspace's fingerprint can be trusted (no entry
        # changed within the last second), the runner answers "unchanged" and uploads nothing.
        kept = "kept: the workspace is unchanged (judged by its runner)"
        wait_for("a snapshot the runner skipped", lambda: send(api, idle, "[[say: nothing new]]")
                 and f"session {idle}: snapshot default/{idle}/workspace.tar.gz {kept}" in coordinator.log(None))

        # Undrained, r1 takes new sessions again (the least loaded: r2 holds two).
        assert ashctl(coordinator, "runners", "undrain", "r1").returncode == 0
        create_on(api, "r1")
