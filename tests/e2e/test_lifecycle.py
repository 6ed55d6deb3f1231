"""Issue #3: lifecycle, cold resume anywhere, crash loops, pool capacity and idle sweep."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from ashd.snapshot.fingerprint import RACY_NS
from tests.conftest import HELLO_AGENT
from tests.e2e.conftest import ACCESS_KEY, SECRET_KEY
from tests.store.pg import fresh_pg_database
from tests.support.daemon import AshdProcess, sse_frames

pytestmark = pytest.mark.e2e


def chat(c: httpx.Client, sid: str, content: str) -> list[tuple[int | None, str, object]]:
    with c.stream("POST", f"/api/sessions/{sid}/messages", json={"content": content}, timeout=120) as r:
        assert r.status_code == 200, r.read()
        return sse_frames(r.read().decode())


def result_of(frames: list[tuple[int | None, str, object]]) -> str:
    return str([d for _, n, d in frames if n == "turn_complete"][-1]["result"])  # type: ignore[index]


def session(c: httpx.Client, sid: str) -> dict[str, object]:
    return dict(c.get(f"/api/sessions/{sid}").json()["session"])


def test_cold_resume_on_a_second_daemon_sharing_postgres_and_s3(
        start_ashd: Callable[..., AshdProcess], s3_endpoint: str, s3_bucket: str) -> None:
    s3 = {"ASH_SNAPSHOT_URL": f"s3://{s3_bucket}/snaps/", "ASH_S3_ENDPOINT": s3_endpoint,
          "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "ASH_API_KEY": "ash_shared_admin"}
    with fresh_pg_database() as db:
        first = start_ashd(db, **s3)
        with httpx.Client(base_url=first.url, headers={"Authorization": "Bearer ash_shared_admin"}, timeout=60) as c:
            c.post("/api/agents", json={"name": "hello", "path": str(HELLO_AGENT)}).raise_for_status()
            sid = c.post("/api/sessions", json={"agent": "hello"}).json()["session"]["id"]
            chat(c, sid, "[[bash: echo gamma-5 > note.txt]] [[say: the code word is gamma-5]]")
        first.stop()

        second = start_ashd(db, **s3)  # a fresh data dir: nothing of the session on its disk
        assert not (second.data_dir / "sandboxes" / sid).exists()
        with httpx.Client(base_url=second.url, headers={"Authorization": "Bearer ash_shared_admin"},
                          timeout=60) as c:
            frames = chat(c, sid, "[[bash: cat note.txt]] [[echo-history]]")
            assert any(n == "tool_result" and "gamma-5" in d["content"] for _, n, d in frames)  # files
            assert "the code word is gamma-5" in result_of(frames)  # conversation
            second.stop()


def test_crash_loop_gives_up_with_a_reason(start_ashd: Callable[..., AshdProcess]) -> None:
    # An agent process that fails at once, every time: its workspace cannot be mounted. (A start
    # that only misses its readiness deadline is load, not a crash loop: issue #18.)
    daemon = start_ashd(None, ASH_RESTART_INTENSITY="2", ASH_RESTART_BACKOFF_BASE_S="0.2")
    with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=120) as c:
        c.post("/api/agents", json={"name": "hello", "path": str(HELLO_AGENT)}).raise_for_status()
        sid = c.post("/api/sessions", json={"agent": "hello"}).json()["session"]["id"]
        assert c.post(f"/api/sessions/{sid}/stop").status_code == 200
        workspace = daemon.data_dir / "sandboxes" / sid / "workspace"
        deadline = time.monotonic() + 60
        while True:  # the stopped sandbox's mounts go with its teardown, just after the answer
            try:
                workspace.rename(workspace.with_name("workspace.aside"))
                break
            except OSError:
                assert time.monotonic() < deadline, "the stopped sandbox's workspace stayed mounted"
                time.sleep(0.1)
        workspace.write_text("not a directory")
        began = time.monotonic()
        r = c.post(f"/api/sessions/{sid}/resume")
        assert r.status_code == 502, r.text
        assert "3 times" in r.json()["error"]  # 1 start + 2 restarts, then it gives up
        assert time.monotonic() - began >= 0.4  # two backoff waits of at least 0.2 s each
        (row,) = c.get("/api/sessions").json()["sessions"]  # kept: an operator can see why
        assert row["status"] == "error" and "3 times" in row["statusReason"]
    assert daemon.log(tail=None).count("restarting in") == 2


def test_pause_resume_stop_fork_and_config(ashd_sqlite: AshdProcess) -> None:
    with httpx.Client(base_url=ashd_sqlite.url, headers=ashd_sqlite.headers, timeout=60) as c:
        c.post("/api/agents", json={"name": "hello", "path": str(HELLO_AGENT)}).raise_for_status()
        sid = c.post("/api/sessions", json={"agent": "hello"}).json()["session"]["id"]
        chat(c, sid, "[[bash: echo delta-3 > f.txt]] [[say: remember delta-3]]")

        assert c.post(f"/api/sessions/{sid}/pause").json()["session"]["status"] == "paused"
        r = c.post(f"/api/sessions/{sid}/messages", json={"content": "hi"})
        assert r.status_code == 400 and r.json()["error"] == "Session is paused"
        assert c.post(f"/api/sessions/{sid}/resume").json()["session"]["status"] == "active"  # warm
        assert c.get("/health").json()["pool"]["resumeWarmHits"] == 1

        assert c.post(f"/api/sessions/{sid}/stop").json()["session"]["status"] == "stopped"
        assert c.post(f"/api/sessions/{sid}/resume").json()["session"]["status"] == "active"  # cold
        assert c.get("/health").json()["pool"]["resumeColdHits"] == 1
        assert "remember delta-3" in result_of(chat(c, sid, "[[echo-history]]"))

        fork = c.post(f"/api/sessions/{sid}/fork").json()["session"]
        assert fork["status"] == "paused" and fork["parentSessionId"] == sid and fork["id"] != sid
        assert len(c.get(f"/api/sessions/{fork['id']}/messages").json()["messages"]) >= 4
        c.post(f"/api/sessions/{fork['id']}/resume").raise_for_status()
        frames = chat(c, fork["id"], "[[bash: cat f.txt]] [[echo-history]]")
        assert any(n == "tool_result" and "delta-3" in d["content"] for _, n, d in frames)
        assert "remember delta-3" in result_of(frames)
        chat(c, fork["id"], "[[bash: echo fork-only > f.txt]]")
        assert "delta-3" in str([d for _, n, d in chat(c, sid, "[[bash: cat f.txt]]") if n == "tool_result"])

        patched = c.patch(f"/api/sessions/{sid}/config", json={"model": "claude-haiku-4-5"})
        assert patched.status_code == 200 and patched.json()["session"]["model"] == "claude-haiku-4-5"
        assert "remember delta-3" in result_of(chat(c, sid, "[[echo-history]]"))  # same conversation
        assert c.patch(f"/api/sessions/{sid}/config", json={"colour": "red"}).status_code == 400

        assert c.delete(f"/api/sessions/{sid}").json()["session"]["status"] == "ended"
        gone = c.post(f"/api/sessions/{sid}/resume")
        assert gone.status_code == 410 and gone.json()["statusCode"] == 410


def test_capacity_503_and_idle_sweep(start_ashd: Callable[..., AshdProcess]) -> None:
    daemon = start_ashd(None, ASH_MAX_SANDBOXES="1", ASH_IDLE_TIMEOUT_MS="1000", ASH_SWEEP_INTERVAL_S="0.5")
    with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=60) as c:
        c.post("/api/agents", json={"name": "hello", "path": str(HELLO_AGENT)}).raise_for_status()
        first = c.post("/api/sessions", json={"agent": "hello"}).json()["session"]["id"]
        with c.stream("POST", f"/api/sessions/{first}/messages",
                      json={"content": "[[slow: 40]] [[say: " + "x " * 60 + "]]"}) as running:
            chunks = running.iter_bytes()
            next(chunks)  # the only sandbox is now running a turn
            full = c.post("/api/sessions", json={"agent": "hello"})
            assert full.status_code == 503 and full.headers["Retry-After"] == "5"
            assert len(c.get("/api/sessions").json()["sessions"]) == 1  # the refused one left no row
            for _ in chunks:  # let the turn finish
                pass
        deadline = time.monotonic() + 20  # swept to paused once idle for 1 s
        while session(c, first)["status"] != "paused" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert session(c, first)["status"] == "paused" and "idle" in str(session(c, first)["statusReason"])
        assert c.get("/health").json()["pool"]["total"] == 0
        c.post(f"/api/sessions/{first}/resume").raise_for_status()
        assert result_of(chat(c, first, "[[say: awake]]")) == "awake"


def test_prewarm_is_claimed_by_the_right_agent_only(start_ashd: Callable[..., AshdProcess], tmp_path: Path) -> None:
    other_agent = tmp_path / "other"
    other_agent.mkdir()
    (other_agent / "CLAUDE.md").write_text("# other\n")
    daemon = start_ashd(None)
    with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=60) as c:
        for name, path in (("hello", HELLO_AGENT), ("other", other_agent)):
            c.post("/api/agents", json={"name": name, "path": str(path)}).raise_for_status()
        assert c.patch("/api/agents/hello/config", json={"preWarmCount": 1}).json()["config"]["preWarmCount"] == 1
        assert c.patch("/api/agents/hello/config", json={"preWarmCount": 99}).status_code == 400
        deadline = time.monotonic() + 30  # wait until the pre-warmed sandbox is up
        while c.get("/health").json()["pool"]["warm"] < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert c.get("/health").json()["pool"]["warm"] == 1

        other = c.post("/api/sessions", json={"agent": "other"}).json()["session"]
        assert c.get("/health").json()["pool"]["preWarmHits"] == 0  # not another agent's sandbox
        custom = c.post("/api/sessions", json={"agent": "hello", "extraEnv": {"MINE": "1"}}).json()["session"]
        assert c.get("/health").json()["pool"]["preWarmHits"] == 0  # not with session-specific env
        claimed = c.post("/api/sessions", json={"agent": "hello"}).json()["session"]
        assert c.get("/health").json()["pool"]["preWarmHits"] == 1
        assert claimed["status"] == "active" and claimed["agentName"] == "hello"
        assert len({other["id"], custom["id"], claimed["id"]}) == 3
        assert result_of(chat(c, claimed["id"], "[[say: warm hello]]")) == "warm hello"
        assert c.get(f"/api/sessions/{claimed['id']}/messages").json()["messages"]


def test_a_turn_that_changes_no_file_does_not_rewrite_the_snapshot(ashd_sqlite: AshdProcess) -> None:
    """Snapshots follow every turn; one that would store the same files is skipped."""
    def turn(c: httpx.Client, sid: str, content: str) -> None:
        with c.stream("POST", f"/api/sessions/{sid}/messages", json={"content": content}, timeout=120) as r:
            assert r.status_code == 200
            r.read()
        # exec asks the session actor too, so it answers only after the turn's snapshot work.
        assert c.post(f"/api/sessions/{sid}/exec", json={"command": "true"}).status_code == 200

    def stored(sid: str) -> tuple[int, int]:
        [blob] = list(ashd_sqlite.data_dir.rglob(f"{sid}/workspace.tar.gz"))
        st = blob.stat()
        return st.st_ino, st.st_mtime_ns  # a save replaces the file (a new inode)

    with httpx.Client(base_url=ashd_sqlite.url, headers=ashd_sqlite.headers, timeout=60) as c:
        c.post("/api/agents", json={"name": "hello", "path": str(HELLO_AGENT)}).raise_for_status()
        sid = c.post("/api/sessions", json={"agent": "hello"}).json()["session"]["id"]
        turn(c, sid, "[[bash: echo one > one.txt]]")
        # A digest is trusted only once every file is older than the racy window.
        time.sleep(RACY_NS / 1e9 + 0.2)
        turn(c, sid, "[[say: settle]]")
        before = stored(sid)
        turn(c, sid, "[[say: nothing to change]]")
        assert stored(sid) == before
        turn(c, sid, "[[bash: echo two > two.txt]]")
        assert stored(sid) != before
