"""The session files API on a coordinator serves the runner's live workspace (issue #11).

A coordinator and a runner as real ashd processes on Postgres, the real CLI in the runner's
sandbox, the scripted model, snapshots in an S3-compatible store (moto). What the agent writes
in a turn is listed and read through the coordinator at once (not from a copy on the
coordinator, nor from the last snapshot); what the API writes is what the agent reads in its
next turn; a file larger than one link chunk arrives whole; ``..``, absolute paths and the
symlinks the agent planted are refused with 400 by the runner's own containment code. Once
the runner is lost, reads come from the session's snapshot and writes answer 409.
"""

from __future__ import annotations

import base64
import hashlib
import io
import signal
import tarfile
from typing import Any

import httpx
import pytest

from tests.conftest import HELLO_AGENT
from tests.e2e.test_remote_sessions import send, shared_blobs
from tests.e2e.test_runners import FAST, Cluster, cluster, pg_url, runners, wait_for  # noqa: F401 (fixtures)
from tests.snapshot.conftest import s3_bucket, s3_client, s3_endpoint  # noqa: F401 (fixtures)
from tests.support.daemon import AshdProcess

pytestmark = pytest.mark.e2e


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def tool_output(api: httpx.Client, sid: str, command: str) -> str:
    return str(next(d for n, d in send(api, sid, f"[[bash: {command}]]") if n == "tool_result")["content"])


def snapshot_names(client: Any, bucket: str, sid: str) -> set[str]:
    """The members of the session's snapshot in the shared bucket (none yet: empty)."""
    try:
        body = client.get_object(Bucket=bucket, Key=f"snapshots/default/{sid}/workspace.tar.gz")["Body"].read()
    except client.exceptions.NoSuchKey:
        return set()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        return {name.removeprefix("./") for name in tar.getnames()}


def test_the_coordinator_serves_the_runners_live_workspace(
        cluster: Cluster, s3_endpoint: str, s3_bucket: str, s3_client: Any) -> None:  # noqa: F811
    blobs = shared_blobs(s3_endpoint, s3_bucket)
    coordinator = cluster.coordinator(**blobs)
    runner = cluster.runner(coordinator.url, "r1", **FAST, **blobs)
    wait_for("r1 registered", lambda: runners(coordinator).get("r1"))
    try:
        files_through_the_coordinator(coordinator, runner, s3_client, s3_bucket)
    finally:
        if runner.proc is not None and runner.proc.poll() is not None:  # killed by the test
            cluster.restart(runner)


def files_through_the_coordinator(coordinator: AshdProcess, runner: AshdProcess, client: Any, bucket: str) -> None:
    with httpx.Client(base_url=coordinator.url, headers=coordinator.headers, timeout=180) as api:
        assert api.post("/api/agents", json={"name": "hello", "path": str(HELLO_AGENT)}).status_code == 201
        made = wait_for("a session placed on r1",
                        lambda: (r := api.post("/api/sessions", json={"agent": "hello"})).status_code == 201 and r)
        sid = made.json()["session"]["id"]
        files = f"/api/sessions/{sid}/files"

        # The agent writes in a turn; the coordinator lists and reads it from the runner.
        out = tool_output(api, sid, "mkdir -p sub && echo made-on-the-runner > sub/made.txt && "
                                    "head -c 2500000 /dev/urandom > big.bin && sha256sum big.bin && "
                                    "ln -s /etc/passwd sub/escape && ln -s .. sub/up && echo planted")
        assert "planted" in out, out
        digest = out.split()[0]
        listing = api.get(files)
        assert listing.status_code == 200, listing.text
        assert listing.json()["source"] == "sandbox"
        shown = {f["path"]: f for f in listing.json()["files"]}
        assert shown["sub/made.txt"]["size"] == len("made-on-the-runner\n")
        assert shown["big.bin"]["size"] == 2500000
        assert "sub/escape" not in shown and "sub/up" not in shown  # symlinks are not listed
        hidden = {f["path"] for f in api.get(files, params={"includeHidden": "false"}).json()["files"]}
        assert "sub/made.txt" in hidden and not any(p.startswith(".") for p in hidden)

        raw = api.get(f"{files}/sub/made.txt")
        assert raw.status_code == 200 and raw.content == b"made-on-the-runner\n"
        assert raw.headers["X-Ash-Source"] == "sandbox"
        as_json = api.get(f"{files}/sub/made.txt", params={"format": "json"}).json()
        assert as_json == {"path": "sub/made.txt", "content": "made-on-the-runner\n", "size": 19, "source": "sandbox"}
        big = api.get(f"{files}/big.bin")  # three link chunks
        assert big.status_code == 200 and hashlib.sha256(big.content).hexdigest() == digest

        # Escapes: refused by the runner's containment (400), nothing outside is read.
        for path in ("sub/escape", "sub/up/sub/made.txt", "sub/up", "sub"):
            refused = api.get(f"{files}/{path}")
            assert refused.status_code == 400, (path, refused.status_code, refused.text)
        assert api.get(f"{files}/%2E%2E/%2E%2E/etc/passwd").status_code in (400, 404)
        assert api.get(f"{files}/nothing-here.txt").status_code == 404
        bad = api.post(files, json={"files": [{"path": "../out.txt", "content": b64(b"x")}]})
        assert bad.status_code == 400, bad.text
        through = api.post(files, json={"files": [{"path": "sub/escape", "content": b64(b"x")},
                                                  {"path": "sub/up/x.txt", "content": b64(b"x")}]})
        assert through.status_code == 200
        assert [f["written"] for f in through.json()["files"]] == [False, False], through.text
        assert "root:" not in api.get(f"{files}/sub/escape").text
        assert api.delete(f"{files}/sub/escape").status_code == 400

        # Writes land in the live workspace: the agent reads them in its next turn.
        wrote = api.post(files, json={"targetPath": "in", "files": [
            {"path": "from-api.txt", "content": b64(b"written-through-the-coordinator")},
            {"path": "large.bin", "content": b64(b"z" * 3_000_000)}]})
        assert wrote.status_code == 200 and all(f["written"] for f in wrote.json()["files"]), wrote.text
        out = tool_output(api, sid, "cat in/from-api.txt && echo && wc -c < in/large.bin")
        assert "written-through-the-coordinator" in out and "3000000" in out, out
        assert api.delete(f"{files}/in/from-api.txt").json() == {"path": "in/from-api.txt", "deleted": True}
        assert "gone" in tool_output(api, sid, "test -e in/from-api.txt || echo gone")

        # Bundles both ways.
        bundle = api.get(f"/api/sessions/{sid}/workspace")
        assert bundle.status_code == 200 and bundle.headers["X-Ash-Source"] == "sandbox"
        with tarfile.open(fileobj=io.BytesIO(bundle.content), mode="r:gz") as tar:
            names = set(tar.getnames())
        assert "sub/made.txt" in names and "in/large.bin" in names
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            info = tarfile.TarInfo("unpacked/note.txt")
            info.size = 8
            tar.addfile(info, io.BytesIO(b"unpacked"))
        applied = api.post(f"/api/sessions/{sid}/workspace", json={"bundle": b64(buf.getvalue())})
        assert applied.status_code == 200, applied.text
        assert "unpacked" in tool_output(api, sid, "cat unpacked/note.txt")

        # The runner is lost: reads come from the snapshot it saved after the last turn.
        wait_for("the last turn's snapshot in the blob store",
                 lambda: "unpacked/note.txt" in snapshot_names(client, bucket, sid))
        runner.stop(signal.SIGKILL)
        wait_for("the session paused by the sweep",
                 lambda: api.get(f"/api/sessions/{sid}").json()["session"]["status"] == "paused")
        listing = api.get(files).json()
        assert listing["source"] == "snapshot"
        assert "unpacked/note.txt" in {f["path"] for f in listing["files"]}
        kept = api.get(f"{files}/sub/made.txt")
        assert kept.content == b"made-on-the-runner\n" and kept.headers["X-Ash-Source"] == "snapshot"
        refused = api.post(files, json={"files": [{"path": "late.txt", "content": b64(b"x")}]})
        assert refused.status_code == 409 and "resume" in refused.json()["error"], refused.text

