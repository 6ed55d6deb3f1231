"""Coordinators and runners as real ashd processes on Postgres: the runner registry (issue #11).

Ash's multi-runner expectations covered here: the coordinator sees the runner and refuses an
unauthenticated registration; a graceful runner stop pauses its sessions; 503 with no runners.
Beyond Ash: heartbeat-timeout death (SIGKILL, SIGSTOP) detected and its sessions paused, a
swept runner registering again at its next heartbeat, two coordinators on one database,
fail-over across coordinator URLs, the operator's listing and drain (``ashctl runners``).
Sessions "on" a runner are rows the test writes with its ``runner_id`` (routing sessions to
runners is not this part's).
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ashd.scripted.server import ScriptedModel
from ashd.store import Store
from tests.conftest import HELLO_AGENT
from tests.e2e.test_ashctl import ashctl
from tests.store.pg import backend_database
from tests.support.daemon import AshdProcess, free_port
from tests.support.sandboxes import instance, layout_of

pytestmark = pytest.mark.e2e

SECRET = "cluster-secret-for-runner-tests-7c1e"
FAST = {"ASH_RUNNER_HEARTBEAT_S": "0.5", "ASH_RUNNER_LIVENESS_TIMEOUT_S": "3"}
DEADLINE_S = 60.0


@pytest.fixture
def pg_url() -> Iterator[str]:
    with backend_database("postgres") as url:
        assert url is not None
        yield url


class Cluster:
    """Starts coordinators and runners under ``tmp_path``; stops them all at teardown."""

    def __init__(self, tmp_path: Path, model: ScriptedModel, database_url: str) -> None:
        self.tmp_path = tmp_path
        self.model = model
        self.database_url = database_url
        self.started: list[AshdProcess] = []

    def coordinator(self, **env: str) -> AshdProcess:
        extra = {"ASH_MODE": "coordinator", "ASH_INTERNAL_SECRET": SECRET, **FAST, **env}
        return self._start(AshdProcess(self._dir("coordinator"), self.model.base_url, self.database_url, extra))

    def runner(self, server_url: str, runner_id: str = "r1", **env: str) -> AshdProcess:
        """A runner started with Ash's environment names (plus ``env``), on its own data dir."""
        port = free_port()
        extra = {"ASH_MODE": "runner", "ASH_RUNNER_ID": runner_id, "ASH_RUNNER_PORT": str(port),
                 "ASH_SERVER_URL": server_url, "ASH_INTERNAL_SECRET": SECRET, **env}
        runner = AshdProcess(self._dir(runner_id), self.model.base_url, None, extra, port=port)
        runner.health_path = "/runner/health"
        return self._start(runner)

    def restart(self, killed: AshdProcess) -> AshdProcess:
        """Start a killed runner again on its data dir: its start sweeps what SIGKILL left
        there (processes, mounts, loop devices, its run dir and cgroup levels); it is stopped
        at teardown, or earlier by the caller."""
        again = AshdProcess(killed.data_dir, killed.env["ANTHROPIC_BASE_URL"], port=killed.port)
        again.env, again.health_path = dict(killed.env), "/runner/health"
        return self._start(again)

    def _dir(self, name: str) -> Path:
        return self.tmp_path / f"{name}-{len(self.started)}"

    def _start(self, daemon: AshdProcess) -> AshdProcess:
        self.started.append(daemon)
        return daemon.start(timeout=120)

    def stop(self) -> None:
        for daemon in reversed(self.started):
            daemon.stop()


@pytest.fixture
def cluster(tmp_path: Path, scripted_model: ScriptedModel, pg_url: str) -> Iterator[Cluster]:
    started = Cluster(tmp_path, scripted_model, pg_url)
    yield started
    started.stop()


def instance_dirs(daemon: AshdProcess) -> list[Path]:
    """What the daemon's sandbox services keep on the host outside its data dir: its run dir
    under the mount root and its cgroup levels (ashd/sandbox/services.py: one instance per
    data dir)."""
    places = [Path("/run/ashd") / instance(daemon), *layout_of(daemon).parents.values()]
    return [place for place in places if place.exists()]


def runners(coordinator: AshdProcess, auth: str = SECRET) -> dict[str, dict[str, Any]]:
    answer = httpx.get(f"{coordinator.url}/api/internal/runners", headers={"Authorization": f"Bearer {auth}"},
                       timeout=30)
    assert answer.status_code == 200, answer.text
    return {r["runnerId"]: r for r in answer.json()["runners"]}


def wait_for(what: str, check: Callable[[], Any], deadline_s: float = DEADLINE_S) -> Any:
    """Poll ``check`` until it returns something truthy; fail after the deadline."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {deadline_s:.0f}s waiting for {what}")


def sessions_on(database_url: str, runner_id: str, count: int = 2) -> list[str]:
    """Write ``count`` active sessions assigned to the runner (as routing would)."""
    store = Store(database_url)
    try:
        ids = [str(uuid.uuid4()) for _ in range(count)]
        for session_id in ids:
            store.create_session("default", session_id, "hello", "active", runner_id=runner_id)
        return ids
    finally:
        store.close()


def statuses(coordinator: AshdProcess, ids: list[str]) -> list[str]:
    with httpx.Client(base_url=coordinator.url, headers=coordinator.headers, timeout=30) as api:
        return [api.get(f"/api/sessions/{i}").json()["session"]["status"] for i in ids]


def post_internal(coordinator: AshdProcess, path: str, body: Any, auth: str | None = SECRET) -> httpx.Response:
    headers = {"Authorization": f"Bearer {auth}"} if auth is not None else {}
    return httpx.post(f"{coordinator.url}/api/internal/runners/{path}", headers=headers, timeout=30,
                      content=json.dumps(body))


def test_a_runner_started_by_ashs_environment_registers_and_only_the_operator_sees_it(cluster: Cluster) -> None:
    coordinator = cluster.coordinator(ASH_RUNNER_HEARTBEAT_S="10", ASH_RUNNER_LIVENESS_TIMEOUT_S="30")  # Ash's
    with httpx.Client(base_url=coordinator.url, headers=coordinator.headers, timeout=60) as api:
        assert api.post("/api/agents", json={"name": "hello", "path": str(HELLO_AGENT)}).status_code == 201
        refused = api.post("/api/sessions", json={"agent": "hello"})  # no runner yet: Ash's 503
        assert refused.status_code == 503 and refused.json()["error"].startswith("No runners available"), refused.text
        assert refused.headers["Retry-After"]

        # Ash's environment names only (no ashd-specific heartbeat settings).
        runner = cluster.runner(coordinator.url)
        listed = wait_for("r1 in the registry", lambda: runners(coordinator).get("r1"))
        assert (listed["host"], listed["port"], listed["alive"], listed["draining"]) == (
            "127.0.0.1", runner.port, True, False)
        assert listed["max"] >= 1 and listed["generation"] == 1
        assert runners(coordinator, coordinator.key)["r1"]["runnerId"] == "r1"  # the operator's admin key

        health = api.get("/health").json()
        assert health["remoteRunners"] == 1 and health["coordinatorId"]
        assert "coordinatorId" not in httpx.get(f"{coordinator.url}/health").json()  # public: nothing of the topology

    probe = httpx.get(f"{runner.url}/runner/health", timeout=30).json()
    assert probe["runnerId"] == "r1" and probe["status"] == "ok" and probe["registration"]["registered"]
    assert SECRET not in json.dumps(probe)
    assert httpx.get(f"{runner.url}/api/sessions", timeout=30).status_code == 404  # a runner serves no API

    # Fail closed: listing and registering need the secret (or, to list, the operator's key).
    assert httpx.get(f"{coordinator.url}/api/internal/runners", timeout=30).status_code == 401
    assert httpx.get(f"{coordinator.url}/api/internal/runners", timeout=30,
                     headers={"Authorization": "Bearer wrong"}).status_code == 401
    rogue = {"runnerId": "rogue", "host": "10.9.9.9", "port": 4200, "maxSandboxes": 1000}
    assert post_internal(coordinator, "register", rogue, auth=None).status_code == 401
    assert post_internal(coordinator, "register", rogue, auth="not-the-secret").status_code == 401
    assert post_internal(coordinator, "register", rogue, auth=coordinator.key).status_code == 401  # a key is no secret
    bad = post_internal(coordinator, "register", {**rogue, "port": "4200"})
    assert bad.status_code == 400 and "port" in bad.json()["error"]
    assert post_internal(coordinator, "register", {"runnerId": "../x", "host": "h", "port": 1}).status_code == 400
    assert "rogue" not in runners(coordinator)
    # Runners serve every tenant: another tenant's admin key neither sees nor drains them.
    minted = httpx.post(f"{coordinator.url}/api/internal/api-keys", headers={"Authorization": f"Bearer {SECRET}"},
                        json={"tenantId": "acme", "scopes": ["admin"]}, timeout=30)
    tenant = {"Authorization": f"Bearer {minted.json()['key']}"}
    assert httpx.get(f"{coordinator.url}/api/internal/runners", headers=tenant, timeout=30).status_code == 403
    assert httpx.post(f"{coordinator.url}/api/internal/runners/r1/drain", headers=tenant,
                      timeout=30).status_code == 403
    assert runners(coordinator)["r1"]["draining"] is False


def test_a_standalone_ashd_keeps_no_registry(start_ashd: Callable[..., AshdProcess]) -> None:
    daemon = start_ashd(None, ASH_INTERNAL_SECRET=SECRET, ASH_RATE_LIMIT_GLOBAL="3")
    registering = post_internal(daemon, "register", {"runnerId": "r1", "host": "127.0.0.1", "port": 4200})
    assert registering.status_code == 409 and "ASH_MODE=coordinator" in registering.json()["error"]
    # Runners share the secret: their calls are not held to one key's budget (3 requests here),
    # or a cluster's heartbeats would be throttled and live runners swept.
    beats = [post_internal(daemon, "heartbeat", {"runnerId": "r1"}).status_code for _ in range(6)]
    assert beats == [409] * 6
    listed = httpx.get(f"{daemon.url}/api/internal/runners", headers=daemon.headers, timeout=30).json()
    assert listed == {"count": 0, "hasLocal": True, "runners": []}
    assert httpx.get(f"{daemon.url}/health", headers=daemon.headers, timeout=30).json()["remoteRunners"] == 0


def test_a_runner_stopped_gracefully_leaves_at_once_and_its_sessions_pause(cluster: Cluster) -> None:
    coordinator = cluster.coordinator()
    runner = cluster.runner(coordinator.url, **FAST)
    wait_for("r1 registered", lambda: runners(coordinator).get("r1"))
    ids = sessions_on(cluster.database_url, "r1")
    other = sessions_on(cluster.database_url, "elsewhere", 1)

    stopped_at = time.monotonic()
    assert runner.stop(signal.SIGTERM) == 0
    wait_for("r1 out of the registry", lambda: "r1" not in runners(coordinator))
    left_after = time.monotonic() - stopped_at
    assert statuses(coordinator, ids) == ["paused", "paused"]
    assert statuses(coordinator, other) == ["active"]  # another runner's session is untouched
    assert "runner r1 deregistered; 2 live session(s) paused" in coordinator.log(None)
    # Gone well before the liveness timeout would have noticed it (printed for the report).
    print(f"runner left the registry {left_after:.2f}s after SIGTERM")


def test_a_runner_that_stops_answering_is_swept_and_registers_again_when_it_returns(cluster: Cluster) -> None:
    coordinator = cluster.coordinator()
    runner = cluster.runner(coordinator.url, **FAST)
    wait_for("r1 registered", lambda: runners(coordinator).get("r1"))
    ids = sessions_on(cluster.database_url, "r1")

    assert runner.proc is not None
    runner.proc.send_signal(signal.SIGSTOP)  # frozen: no heartbeat, no deregistration
    frozen_at = time.monotonic()
    try:
        wait_for("r1 swept", lambda: "r1" not in runners(coordinator))
        print(f"frozen runner swept {time.monotonic() - frozen_at:.2f}s after SIGSTOP (liveness timeout 3 s)")
        assert statuses(coordinator, ids) == ["paused", "paused"]
        assert "runner r1 sent no heartbeat for over 3 s: removed from the registry; 2 live session(s) paused" \
            in coordinator.log(None)
    finally:
        runner.proc.send_signal(signal.SIGCONT)
    # Its next heartbeat answers 404: it registers again at once, under a new generation.
    again = wait_for("r1 registered again", lambda: runners(coordinator).get("r1"), deadline_s=30)
    assert again["generation"] == 2
    assert "registering again" in runner.log(None)

    more = sessions_on(cluster.database_url, "r1", 1)
    runner.stop(signal.SIGKILL)
    wait_for("r1 swept after SIGKILL", lambda: "r1" not in runners(coordinator))
    assert statuses(coordinator, more) == ["paused"]
    metrics = httpx.get(f"{coordinator.url}/metrics", headers=coordinator.headers, timeout=30).text
    assert "ashd_runners_lost_total 2.0" in metrics
    assert 'ashd_runners{state="live"} 0.0' in metrics

    # SIGKILL left the runner's run dir and cgroup levels; its next start sweeps them and its
    # graceful stop removes what it made again.
    assert instance_dirs(runner), "nothing left by SIGKILL: the check below would prove nothing"
    back = cluster.restart(runner)
    wait_for("r1 registered after its restart", lambda: runners(coordinator).get("r1"))
    assert back.stop() == 0
    assert instance_dirs(runner) == []


def test_two_coordinators_share_the_registry_and_heartbeats_fail_over(cluster: Cluster) -> None:
    first, second = cluster.coordinator(), cluster.coordinator()
    nobody = f"http://127.0.0.1:{free_port()}"  # a coordinator URL that refuses connections
    runner = cluster.runner(f"{nobody},{first.url},{second.url}", **FAST)
    wait_for("r1 registered", lambda: runners(first).get("r1"))
    assert runners(second)["r1"]["port"] == runner.port  # one registry in the database
    assert "registering with " + nobody + " failed" in runner.log(None)

    first.stop()
    time.sleep(4)  # longer than the liveness timeout: only heartbeats through the second keep it
    assert runners(second)["r1"]["alive"]
    assert runners(second)["r1"]["generation"] == 1  # never dropped, never registered again


def test_the_operator_drains_a_runner_with_ashctl(cluster: Cluster) -> None:
    coordinator = cluster.coordinator()
    cluster.runner(coordinator.url, runner_id="r-drain", **FAST)
    wait_for("r-drain registered", lambda: runners(coordinator).get("r-drain"))

    listed = ashctl(coordinator, "runners")
    assert listed.returncode == 0, listed.stderr
    header, line = listed.stdout.splitlines()[:2]
    assert header.split() == ["ID", "ADDRESS", "CAPACITY", "ACTIVE", "WARMING", "HEARTBEAT", "GEN", "DRAINING"]
    assert line.startswith("r-drain") and line.rstrip().endswith("no")

    drained = ashctl(coordinator, "runners", "drain", "r-drain", "--json")
    assert drained.returncode == 0, drained.stderr
    assert json.loads(drained.stdout)["runner"]["draining"] is True
    assert runners(coordinator)["r-drain"]["draining"] is True
    as_json = json.loads(ashctl(coordinator, "runners", "--json").stdout)
    assert as_json["count"] == 1 and as_json["hasLocal"] is False
    assert ashctl(coordinator, "runners", "undrain", "r-drain").returncode == 0
    assert runners(coordinator)["r-drain"]["draining"] is False
    missing = ashctl(coordinator, "runners", "drain", "nobody")
    assert missing.returncode == 1 and "not registered" in missing.stderr
