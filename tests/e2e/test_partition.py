"""A runner cut off by a network partition, and back (issue #11, items 6 and 7).

Real processes on Postgres: a coordinator, runner ``r1`` inside a network namespace this test
creates (a veth pair with test addresses, 10.231.x.y/30), runner ``r2`` in the host's
namespace, the scripted model and an S3-compatible server (moto) for the snapshots. The
coordinator, the model and moto listen on the veth's host address; ``r1`` listens on its
namespace address and the coordinator dials it there. The partition takes the veth's host end
down (and blackholes the namespace's address so nothing leaks out of the default route): no
process is killed, no connection is closed, packets just stop both ways.

What must hold: a running turn ends with ``error`` + ``done`` (not a hang); the coordinator
sweeps ``r1`` after the liveness timeout and the session shows ``paused``; ``r1`` on its own
stops the session's sandbox (it cannot reach any coordinator: fencing); the session resumes on
``r2`` with its conversation and files. Healed, ``r1`` registers again under a higher
generation, holds nothing of the moved session, a heartbeat with its old generation is refused,
and a new session may be placed on it. No stored message is duplicated or lost, and the
stream's event ids have no gaps or duplicates.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import secrets
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pyroute2 import IPRoute, NetlinkError, NetNS, netns

from ashd.scripted.server import ScriptedModel
from tests.conftest import HELLO_AGENT
from tests.e2e.test_remote_sessions import shared_blobs
from tests.e2e.test_runners import SECRET, Cluster, pg_url, post_internal, runners, wait_for  # noqa: F401 (fixture)
from tests.snapshot.conftest import ACCESS_KEY, SECRET_KEY, start_moto
from tests.support.daemon import AshdProcess, agent_processes, free_port, sse_frames
from tests.support.turns import StreamedTurn

pytestmark = pytest.mark.e2e


# Fast, with room for a loaded machine (2 cores, load 10+): r1 fences 5 s after its last
# heartbeat taken was sent, a coordinator sweeps it 6 s after it took it.
TIMING = {"ASH_RUNNER_HEARTBEAT_S": "1", "ASH_RUNNER_LIVENESS_TIMEOUT_S": "6"}
LIVENESS_S = 6.0


@dataclass
class Net:
    """A network namespace with a veth pair to the host: ``host_addr`` <-> ``ns_addr`` (/30)."""

    name: str
    host_if: str
    ns_if: str
    host_addr: str
    ns_addr: str
    cut_now: bool = False

    @property
    def enter(self) -> list[str]:
        """argv prefix that runs a command in the namespace (network only)."""
        return ["nsenter", f"--net=/run/netns/{self.name}", "--"]

    def cut(self) -> None:
        """Partition: the host end down, the namespace's address blackholed (silent both ways)."""
        with IPRoute() as ipr:
            ipr.route("add", dst=f"{self.ns_addr}/32", type="blackhole")
            ipr.link("set", index=ipr.link_lookup(ifname=self.host_if)[0], state="down")
        self.cut_now = True

    def heal(self) -> None:
        with IPRoute() as ipr:
            if self.cut_now:
                with contextlib.suppress(NetlinkError):
                    ipr.route("del", dst=f"{self.ns_addr}/32", type="blackhole")
            for index in ipr.link_lookup(ifname=self.host_if):
                ipr.link("set", index=index, state="up")
        self.cut_now = False


def _free_subnet() -> tuple[str, str]:
    """Two addresses of an unused 10.231.x.y/30 (not assigned anywhere on the host)."""
    with IPRoute() as ipr:
        used = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(family=2)}
    for _ in range(100):
        base = f"10.231.{random.randrange(256)}.{4 * random.randrange(64)}"
        prefix, last = base.rsplit(".", 1)
        pair = (f"{prefix}.{int(last) + 1}", f"{prefix}.{int(last) + 2}")
        if not used & set(pair):
            return pair
    raise AssertionError("no free 10.231.x.y/30 on this host")


@pytest.fixture
def net() -> Iterator[Net]:
    tag = secrets.token_hex(3)
    host_addr, ns_addr = _free_subnet()
    made = Net(f"ashd-pt-{tag}", f"ashpt{tag}h", f"ashpt{tag}n", host_addr, ns_addr)
    netns.create(made.name)
    try:
        with IPRoute() as ipr:
            ipr.link("add", ifname=made.host_if, kind="veth", peer=made.ns_if)
            host_index = ipr.link_lookup(ifname=made.host_if)[0]
            ipr.link("set", index=ipr.link_lookup(ifname=made.ns_if)[0], net_ns_fd=made.name)
            ipr.addr("add", index=host_index, address=host_addr, prefixlen=30)
            ipr.link("set", index=host_index, state="up")
        with NetNS(made.name) as ns:
            inside = ns.link_lookup(ifname=made.ns_if)[0]
            ns.addr("add", index=inside, address=ns_addr, prefixlen=30)
            ns.link("set", index=inside, state="up")
            ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")
        yield made
    finally:
        with contextlib.suppress(Exception):
            made.heal()
        with IPRoute() as ipr:
            for index in ipr.link_lookup(ifname=made.host_if):  # deleting one end deletes the pair
                ipr.link("del", index=index)
        netns.remove(made.name)


@dataclass
class World:
    net: Net
    cluster: Cluster
    blobs: dict[str, str]
    s3: Any
    bucket: str

    def coordinator(self) -> AshdProcess:
        """Listens on the veth's host address (reachable from the namespace and the host)."""
        port = free_port()
        daemon = AshdProcess(self.cluster._dir("coordinator"), self.cluster.model.base_url, self.cluster.database_url,
                             {"ASH_MODE": "coordinator", "ASH_INTERNAL_SECRET": SECRET, "ASH_HOST": self.net.host_addr,
                              **TIMING, **self.blobs}, port=port)
        daemon.url = f"http://{self.net.host_addr}:{port}"
        return self.cluster._start(daemon)

    def runner(self, coordinator: AshdProcess, runner_id: str, inside: bool) -> AshdProcess:
        port = free_port()
        host = self.net.ns_addr if inside else "127.0.0.1"
        daemon = AshdProcess(self.cluster._dir(runner_id), self.cluster.model.base_url, None, {
            "ASH_MODE": "runner", "ASH_RUNNER_ID": runner_id, "ASH_RUNNER_PORT": str(port), "ASH_RUNNER_HOST": host,
            "ASH_SERVER_URL": coordinator.url, "ASH_INTERNAL_SECRET": SECRET, **TIMING, **self.blobs},
            port=port, wrap=self.net.enter if inside else None)
        daemon.url, daemon.health_path = f"http://{host}:{port}", "/runner/health"
        return self.cluster._start(daemon)

    def snapshots(self) -> list[str]:
        listed = self.s3.list_objects_v2(Bucket=self.bucket)
        return [item["Key"] for item in listed.get("Contents", [])]

    def snapshotted(self, name: str) -> bool:
        """Whether a workspace snapshot in the shared store holds a file ``name``."""
        for key in self.snapshots():
            archive = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            with tarfile.open(fileobj=io.BytesIO(archive), mode="r:*") as tar:
                if any(Path(member.name).name == name for member in tar.getmembers()):
                    return True
        return False


@pytest.fixture
def world(net: Net, tmp_path: Path, pg_url: str) -> Iterator[World]:  # noqa: F811
    import boto3

    model = ScriptedModel()
    model.start(host=net.host_addr)
    moto, endpoint = start_moto(tmp_path / "moto.log", host=net.host_addr)
    cluster = Cluster(tmp_path, model, pg_url)
    try:
        s3 = boto3.session.Session().client("s3", endpoint_url=endpoint, region_name="us-east-1",
                                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
        bucket = f"ashd-pt-{secrets.token_hex(6)}"
        s3.create_bucket(Bucket=bucket)
        yield World(net, cluster, shared_blobs(endpoint, bucket), s3, bucket)
    finally:
        net.heal()  # stopping runners deregister: let them reach the coordinator
        cluster.stop()
        moto.terminate()
        moto.wait(timeout=30)
        model.stop()


def send(api: httpx.Client, session_id: str, content: str, seen: list[tuple[int | None, str, Any]]) \
        -> list[tuple[str, Any]]:
    """One turn; its frames are added to ``seen`` (ids included)."""
    with api.stream("POST", f"/api/sessions/{session_id}/messages", timeout=180,
                    json={"content": content, "includePartialMessages": True}) as resp:
        assert resp.status_code == 200, resp.read()
        frames = sse_frames(resp.read().decode())
    seen.extend(frames)
    return [(name, data) for _, name, data in frames]


def health_inside(net: Net, runner: AshdProcess) -> dict[str, Any]:
    """``GET /runner/health`` asked from inside the namespace (reachable while the link is cut)."""
    probe = f"import sys, urllib.request; sys.stdout.write(urllib.request.urlopen({runner.url + '/runner/health'!r}, " \
            "timeout=20).read().decode())"
    done = subprocess.run([*net.enter, sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def logged_at(daemon: AshdProcess, text: str) -> datetime:
    """When ``daemon`` first logged a line containing ``text`` (its log's wall-clock stamp)."""
    line = next((line for line in daemon.log(None).splitlines() if text in line), None)
    assert line is not None, f"{daemon.log_path} has no line with {text!r}"
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")


def result_of(events: list[tuple[str, Any]]) -> str:
    names = [name for name, _ in events]
    assert names[-1] == "done" and "error" not in names, events[-5:]
    return str(next(d for n, d in events if n == "turn_complete")["result"])


def test_a_partitioned_runner_is_fenced_and_its_session_moves_with_nothing_lost(world: World) -> None:
    net = world.net
    coordinator = world.coordinator()
    first = world.runner(coordinator, "r1", inside=True)
    wait_for("r1 registered from its namespace", lambda: runners(coordinator).get("r1"))
    assert runners(coordinator)["r1"]["host"] == net.ns_addr  # the coordinator dials the namespace
    seen: list[tuple[int | None, str, Any]] = []
    marker = f"first-words-{secrets.token_hex(4)}"
    with httpx.Client(base_url=coordinator.url, headers=coordinator.headers, timeout=180) as api:
        assert api.post("/api/agents", json={"name": "hello", "path": str(HELLO_AGENT)}).status_code == 201
        made = wait_for("a session placed on r1 (the link is up)",
                        lambda: (r := api.post("/api/sessions", json={"agent": "hello"})).status_code == 201 and r)
        sid = made.json()["session"]["id"]
        assert made.json()["session"]["runnerId"] == "r1"
        second = world.runner(coordinator, "r2", inside=False)  # after the placement: the session is r1's

        assert "answered across the veth" in result_of(send(
            api, sid, f"{marker} [[say: answered across the veth]]", seen))
        wrote = send(api, sid, "[[bash: echo kept-through-the-partition > kept.txt && cat kept.txt]]", seen)
        assert "kept-through-the-partition" in next(d for n, d in wrote if n == "tool_result")["content"]
        wait_for("the workspace snapshot with kept.txt in the shared store", lambda: world.snapshotted("kept.txt"))
        wait_for("r2 registered", lambda: runners(coordinator).get("r2"))
        assert agent_processes(first), "the session's sandbox runs on r1"

        # A turn is streaming when the link is cut: the client gets error + done, not a hang.
        words = " ".join(f"w{i}" for i in range(600))
        turn = StreamedTurn(api, sid, f"[[slow: 50]] [[say: {words}]]")
        assert turn.started.wait(120)
        net.cut()
        cut_at = time.monotonic()
        got = sse_frames(turn.join(120))
        ended_after = time.monotonic() - cut_at
        seen.extend(got)
        names = [name for _, name, _ in got]
        assert names[-2:] == ["error", "done"], names[-5:]

        # The coordinator sweeps r1; the session shows paused, and resumes on r2 at once, with
        # its conversation and files.
        wait_for("r1 swept", lambda: not runners(coordinator).get("r1", {}).get("alive"))
        wait_for("the session paused by the sweep",
                 lambda: api.get(f"/api/sessions/{sid}").json()["session"]["status"] == "paused")
        resumed = wait_for("the session resumed (503 until the link to r2 is up)",
                           lambda: (r := api.post(f"/api/sessions/{sid}/resume")).status_code != 503 and r)
        assert resumed.status_code == 200 and resumed.json()["session"]["runnerId"] == "r2", resumed.text
        history = result_of(send(api, sid, "[[echo-history]] after the cut", seen))
        assert marker in history and "answered across the veth" in history, history
        kept = next(d for n, d in send(api, sid, "[[bash: cat kept.txt]]", seen) if n == "tool_result")
        assert "kept-through-the-partition" in kept["content"], kept

        # r1, cut off, stopped the session's sandbox by its own clock (no coordinator took a
        # heartbeat within the liveness timeout), before the session started on r2: at no time
        # did both run. The link pings would have closed the half-open link only later.
        wait_for("r1 stopped the session's sandbox", lambda: not agent_processes(first), deadline_s=30)
        assert health_inside(net, first)["registration"]["fenced"] is True
        fenced_at = logged_at(first, "this runner is fenced; stopping it")
        moved_at = logged_at(coordinator, f"session {sid}: runner r1 is gone; starting its sandbox on runner r2")
        assert fenced_at < moved_at, (fenced_at, moved_at)
        assert agent_processes(second)

        # Heal: r1 hears it was swept (404), registers again under a higher generation.
        net.heal()
        again = wait_for("r1 registered again", lambda: (r := runners(coordinator).get("r1")) and r["alive"]
                         and r["generation"] >= 2 and r, deadline_s=90)
        stale = post_internal(coordinator, "heartbeat", {"runnerId": "r1", "generation": again["generation"] - 1,
                                                         "stats": {}, "activeCount": 0})
        assert stale.status_code == 404, stale.text
        assert runners(coordinator)["r1"]["generation"] == again["generation"]
        assert health_inside(net, first)["registration"]["fenced"] is False  # lifted by the registration
        assert not agent_processes(first), "r1 kept a sandbox of the moved session"
        assert api.get(f"/api/sessions/{sid}").json()["session"]["runnerId"] == "r2"
        wrote = send(api, sid, "[[bash: echo written-on-r2 > r2.txt && cat r2.txt]]", seen)
        assert "written-on-r2" in next(d for n, d in wrote if n == "tool_result")["content"]
        assert not agent_processes(first)

        # r1 takes sessions again: r2 leaves (SIGTERM: deregistered, its sessions paused) and the
        # moved session comes back to r1, with the files it made on r2 (the snapshot, not what
        # r1 kept on its disk from before the partition), and a new session is placed there.
        wait_for("the snapshot with r2.txt in the shared store", lambda: world.snapshotted("r2.txt"))
        assert second.stop() == 0
        wait_for("the session paused when r2 left",
                 lambda: api.get(f"/api/sessions/{sid}").json()["session"]["status"] == "paused")
        back = wait_for("the session resumed on r1 (its new link is up)",
                        lambda: (r := api.post(f"/api/sessions/{sid}/resume")).status_code != 503 and r)
        assert back.status_code == 200 and back.json()["session"]["runnerId"] == "r1", back.text
        files = next(d for n, d in send(api, sid, "[[bash: cat kept.txt r2.txt]]", seen) if n == "tool_result")
        assert "kept-through-the-partition" in files["content"] and "written-on-r2" in files["content"], files
        history = result_of(send(api, sid, "[[echo-history]] back on r1", seen))  # the turns on r2 included
        assert marker in history and "echo written-on-r2" in history and "after the cut" in history, history
        assert "its stale sandbox folder here discarded" in first.log(None)
        fresh = api.post("/api/sessions", json={"agent": "hello"})
        assert fresh.status_code == 201 and fresh.json()["session"]["runnerId"] == "r1", fresh.text
        other: list[tuple[int | None, str, Any]] = []
        assert "new on r1" in result_of(send(api, fresh.json()["session"]["id"], "[[say: new on r1]]", other))
        assert agent_processes(first)

        # Nothing lost, nothing twice: each message stored once, event ids without gaps.
        messages = api.get(f"/api/sessions/{sid}/messages").json()["messages"]
        users = [m["content"] for m in messages if m["type"] == "user"]
        turns = 8  # two before the cut, the cut one, two on r2, one on r2 after healing, two back on r1
        assert len(users) == turns and len(set(users)) == turns, users
        assert sum(marker in u for u in users) == 1
        replies = [m["content"] for m in messages if m["type"] == "assistant"]
        assert sum("answered across the veth" in r and "history:" not in r for r in replies) == 1, replies
        with api.stream("GET", f"/api/sessions/{sid}/stream", headers={"Last-Event-ID": "0"}) as replay:
            stored = sse_frames(replay.read().decode())
        ids = [event_id for event_id, _, _ in stored]
        assert ids == list(range(1, len(ids) + 1)), ids
        live = [(event_id, name) for event_id, name, _ in seen if event_id is not None]
        assert len({i for i, _ in live}) == len(live), "an event id reached the client twice"
        assert set(live) <= {(event_id, name) for event_id, name, _ in stored}, "a live event was not stored"
        assert sum(name == "done" for _, name, _ in stored) == turns

    print(f"partition: the turn ended {ended_after:.1f}s after the cut; r1 fenced itself "
          f"{(moved_at - fenced_at).total_seconds():.1f}s before the session started on r2 (liveness timeout "
          f"{LIVENESS_S:g} s); load {os.getloadavg()[0]:.1f}")
