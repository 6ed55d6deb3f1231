"""Sessions whose sandbox lives on a runner: a coordinator and runners as real ashd processes
on Postgres, the real CLI in the runner's sandbox, the scripted model (issue #11, part 2).

Create through the coordinator lands on the runner (``runnerId``); a message streams the same
SSE events as standalone; the conversation continues across turns; SIGKILL of the runner ends
the running turn with ``error`` + ``done``; resume continues on another runner with the
conversation (the transcript from the database) and its files (the workspace snapshot the
first runner saved after each turn into an S3-compatible store, moto, restored by the second).
"""

from __future__ import annotations

import signal
import time
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import HELLO_AGENT
from tests.e2e.test_runners import FAST, Cluster, cluster, pg_url, runners, wait_for  # noqa: F401 (fixtures)
from tests.snapshot.conftest import ACCESS_KEY, SECRET_KEY, s3_bucket, s3_client, s3_endpoint  # noqa: F401 (fixtures)
from tests.support.daemon import AshdProcess, is_bridge, sse_events
from tests.support.turns import StreamedTurn

pytestmark = pytest.mark.e2e


def send(api: httpx.Client, session_id: str, content: str) -> list[tuple[str, Any]]:
    with api.stream("POST", f"/api/sessions/{session_id}/messages", timeout=180,
                    json={"content": content, "includePartialMessages": True}) as resp:
        assert resp.status_code == 200, resp.read()
        return sse_events(resp.read().decode())


def bridges_of(daemon: AshdProcess) -> list[psutil.Process]:
    out = []
    for proc in daemon.descendants():
        try:
            if is_bridge(" ".join(proc.cmdline())):  # not the zygote that forks them
                out.append(proc)
        except psutil.Error:
            continue
    return out


def shared_blobs(endpoint: str, bucket: str) -> dict[str, str]:
    """The environment that points an ashd's snapshots at the shared S3 bucket."""
    return {"ASH_SNAPSHOT_URL": f"s3://{bucket}/snapshots/", "ASH_S3_ENDPOINT": endpoint, "ASH_S3_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_EC2_METADATA_DISABLED": "true"}


def test_a_session_runs_on_a_runner_and_resumes_on_another_after_a_kill(
        cluster: Cluster, s3_endpoint: str, s3_bucket: str) -> None:  # noqa: F811
    blobs = shared_blobs(s3_endpoint, s3_bucket)
    coordinator = cluster.coordinator(**blobs)
    first = cluster.runner(coordinator.url, "r1", **FAST, **blobs)
    wait_for("r1 registered", lambda: runners(coordinator).get("r1"))
    with httpx.Client(base_url=coordinator.url, headers=coordinator.headers, timeout=180) as api:
        assert api.post("/api/agents", json={"name": "hello", "path": str(HELLO_AGENT)}).status_code == 201
        made = wait_for("a session placed on r1 (the link is up)",
                        lambda: (r := api.post("/api/sessions", json={"agent": "hello"})).status_code == 201 and r)
        session = made.json()["session"]
        sid = session["id"]
        assert session["runnerId"] == "r1" and session["status"] == "active", session
        assert bridges_of(first) and not bridges_of(coordinator)  # the sandbox is the runner's child

        events = send(api, sid, "[[say: remote answer one with words]]")
        names = [name for name, _ in events]
        assert names[0] == "session_start" and names[-1] == "done" and "error" not in names, names
        assert "".join(d["delta"] for n, d in events if n == "text_delta") == "remote answer one with words"
        assert names.index("text_delta") < names.index("turn_complete") < names.index("done")
        # The runner's model proxy metered the turn; the coordinator recorded it as the session's.
        stats = wait_for("the turn's usage in the coordinator's database", lambda: (s := api.get(
            "/api/usage/stats", params={"sessionId": sid}).json()["stats"])["totalMessages"] >= 1 and s)
        assert stats["totalInputTokens"] > 0 and stats["totalOutputTokens"] > 0 and stats["totalCostUsd"] > 0, stats

        result = next(d for n, d in send(api, sid, "[[echo-history]] second") if n == "turn_complete")
        assert "remote answer one" in result["result"]  # the conversation continues on the runner
        made = next(d for n, d in send(api, sid, "[[bash: echo kept-across-runners > kept.txt && cat kept.txt]]")
                    if n == "tool_result")
        assert "kept-across-runners" in made["content"], made

        # SIGKILL the runner mid-turn: the stream ends with error + done, at once.
        words = " ".join(f"w{i}" for i in range(600))
        turn = StreamedTurn(api, sid, f"[[slow: 50]] [[say: {words}]]")
        assert turn.started.wait(120)
        killed_at = time.monotonic()
        first.stop(signal.SIGKILL)
        got = sse_events(turn.join(120))
        names = [name for name, _ in got]
        assert names[-2:] == ["error", "done"], names[-5:]
        assert time.monotonic() - killed_at < 30

        # Another runner; once r1 is swept the session resumes there with its conversation.
        second = cluster.runner(coordinator.url, "r2", **FAST, **blobs)
        wait_for("r2 registered", lambda: runners(coordinator).get("r2"))
        wait_for("r1 swept", lambda: not runners(coordinator).get("r1", {}).get("alive"))
        # The sweep pauses r1's sessions (Ash's status for a lost runner); "alive" turns false a
        # moment before it runs, and a resume of a session still active would be a no-op.
        wait_for("the session paused by the sweep",
                 lambda: api.get(f"/api/sessions/{sid}").json()["session"]["status"] == "paused")
        resumed = wait_for("the session resumed (503 until the link to r2 is up)",
                           lambda: (r := api.post(f"/api/sessions/{sid}/resume")).status_code != 503 and r)
        assert resumed.status_code == 200 and resumed.json()["session"]["status"] == "active", resumed.text
        assert resumed.json()["session"]["runnerId"] == "r2"
        result = next(d for n, d in send(api, sid, "[[echo-history]] third") if n == "turn_complete")
        assert "remote answer one" in result["result"]
        assert api.get(f"/api/sessions/{sid}").json()["session"]["runnerId"] == "r2"
        kept = next(d for n, d in send(api, sid, "[[bash: cat kept.txt]]") if n == "tool_result")
        assert "kept-across-runners" in kept["content"], kept  # the file came back from the snapshot

        # Ended: the coordinator has r2 remove the session's folder (workspace image and all).
        folders = second.data_dir / "sandboxes"
        assert any(folders.iterdir())
        assert api.delete(f"/api/sessions/{sid}").json()["session"]["status"] == "ended"
        wait_for("the ended session's folder removed on r2", lambda: not any(folders.iterdir()))

    # r1 comes back (a new generation): it holds nothing of the session, which stays on r2. Its
    # start also sweeps what the SIGKILL left on its disk (mounts, loop devices).
    again = AshdProcess(first.data_dir, first.env["ANTHROPIC_BASE_URL"], port=first.port)
    again.env, again.health_path = dict(first.env), "/runner/health"
    cluster.started.append(again.start(timeout=120))
    wait_for("r1 registered again", lambda: runners(coordinator).get("r1", {}).get("generation", 0) >= 2)
    assert not bridges_of(again)
