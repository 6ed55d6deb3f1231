"""Scale-out timings: session create routed to a runner vs standalone, and runner fail-over.

(a) **Create**: a standalone ashd and a coordinator with one runner, each on a fresh Postgres
database, the default isolating launcher on both. Rounds alternate between the two in blocks
of BLOCK so drift on the machine hits both; each timed ``POST /api/sessions`` (201, the
session ``active``: its sandbox started, locally or on the runner over the link) is followed by
an untimed ``DELETE`` so the pools stay empty. Reported: median, p90, p99, mean per path and
coordinator minus standalone.

(b) **Fail-over**: a coordinator and two runners sharing an S3-compatible blob store (a local
moto_server). One session answers a turn on runner X; X is killed with SIGKILL; timed from
the kill to the session's first ``text_delta`` on the other runner, through the documented
path: the coordinator's liveness sweep pauses it (``cluster.liveness_timeout_s``, set here to
``--liveness-timeout`` with heartbeats every ``--heartbeat``), ``POST /resume`` starts it on the
other runner (conversation from the database, files from the snapshot), ``POST /messages``.
Phases: kill -> paused (detection), resume call, message -> first event. The killed runner is
started again on its data dir (its start sweeps what SIGKILL left) and becomes the next
repetition's spare.

    .venv/bin/python benchmarks/scale_out.py --rounds 20 --failovers 3 --out /tmp/scale_out.json

Measured under load the figures are not comparable: the JSON records the load average.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ashd.scripted.server import ScriptedModel  # noqa: E402
from benchmarks.message_latency import PROMPT, emit, machine, summary  # noqa: E402
from benchmarks.runner_overhead import QUIET, SECRET, session_on  # noqa: E402
from benchmarks.scratch import scratch  # noqa: E402
from tests.store.pg import backend_database  # noqa: E402
from tests.support.daemon import AshdProcess, free_port  # noqa: E402

BLOCK = 5
ACCESS_KEY, SECRET_KEY = "bench-key", "bench-secret"


class Deployment:
    """Processes started for one measurement; :meth:`stop` stops them all (newest first)."""

    def __init__(self, tmp: Path, model: ScriptedModel) -> None:
        self.tmp, self.model = tmp, model
        tmp.mkdir(parents=True, exist_ok=True)
        self.started: list[AshdProcess] = []

    def daemon(self, name: str, database: str | None, env: dict[str, str], port: int | None = None) -> AshdProcess:
        daemon = AshdProcess(self.tmp / name, self.model.base_url, database, {**QUIET, **env}, port=port)
        if env.get("ASH_MODE") == "runner":
            daemon.health_path = "/runner/health"
        self.started.append(daemon)
        return daemon.start(timeout=120)

    def runner(self, name: str, coordinator: AshdProcess, env: dict[str, str]) -> AshdProcess:
        port = free_port()
        return self.daemon(name, None, {"ASH_MODE": "runner", "ASH_RUNNER_ID": name, "ASH_RUNNER_PORT": str(port),
                                        "ASH_SERVER_URL": coordinator.url, "ASH_INTERNAL_SECRET": SECRET, **env},
                           port=port)

    def restart(self, killed: AshdProcess) -> AshdProcess:
        again = AshdProcess(killed.data_dir, self.model.base_url, port=killed.port)
        again.env, again.health_path = dict(killed.env), killed.health_path
        self.started.append(again)
        return again.start(timeout=120)

    def stop(self) -> None:
        for daemon in reversed(self.started):
            if daemon.proc is not None and daemon.proc.poll() is None:
                daemon.stop()


def timed_create(client: httpx.Client) -> float:
    start = time.perf_counter()
    resp = client.post("/api/sessions", json={"agent": "bench"})
    elapsed = (time.perf_counter() - start) * 1000
    assert resp.status_code == 201 and resp.json()["session"]["status"] == "active", resp.text
    assert client.delete(f"/api/sessions/{resp.json()['session']['id']}").status_code in (200, 204)
    return elapsed


def creates(tmp: Path, model: ScriptedModel, rounds: int, warmup: int) -> dict[str, Any]:
    results: dict[str, list[float]] = {"standalone": [], "coordinator": []}
    deployment = Deployment(tmp / "create", model)
    with backend_database("postgres") as db_a, backend_database("postgres") as db_b:
        try:
            standalone = deployment.daemon("standalone", db_a, {})
            coordinator = deployment.daemon("coordinator", db_b, {"ASH_MODE": "coordinator",
                                                                  "ASH_INTERNAL_SECRET": SECRET})
            deployment.runner("bench-runner", coordinator, {})
            with (httpx.Client(base_url=standalone.url, headers=standalone.headers, timeout=120) as local,
                  httpx.Client(base_url=coordinator.url, headers=coordinator.headers, timeout=120) as remote):
                clients = {"standalone": local, "coordinator": remote}
                for daemon, client in ((standalone, local), (coordinator, remote)):
                    client.delete(f"/api/sessions/{session_on(daemon, client)}")  # registers the agent; link up
                for _ in range(warmup):
                    for client in clients.values():
                        timed_create(client)
                done = 0
                while done < rounds:
                    block = min(BLOCK, rounds - done)
                    for name, client in clients.items():
                        results[name].extend(timed_create(client) for _ in range(block))
                    done += block
        finally:
            deployment.stop()
    stats = {name: summary(values) for name, values in results.items()}
    added = {stat: round(stats["coordinator"][stat] - stats["standalone"][stat], 2)
             for stat in ("median_ms", "p90_ms", "p99_ms", "mean_ms")}
    return {"rounds": rounds, "warmup": warmup, "block": BLOCK, "stats": stats, "coordinator_added": added}


def first_event_ms(client: httpx.Client, sid: str) -> float:
    start = time.perf_counter()
    with client.stream("POST", f"/api/sessions/{sid}/messages",
                       json={"content": PROMPT, "includePartialMessages": True}) as resp:
        assert resp.status_code == 200, resp.read()
        chunks = resp.iter_text()
        first = next((time.perf_counter() for chunk in chunks if "event: text_delta" in chunk), None)
        for _ in chunks:  # let the turn finish before the next step
            pass
    if first is None:
        raise AssertionError("the turn sent no text_delta")
    return (first - start) * 1000


def until(what: str, check: Any, deadline_s: float = 120.0) -> Any:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise RuntimeError(f"timed out waiting for {what}")


def start_moto(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    exe = Path(sys.executable).with_name("moto_server")
    port = free_port()
    with open(log, "ab") as out:
        proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    until("moto_server", lambda: _answers(url), 30)
    return proc, url


def _answers(url: str) -> bool:
    try:
        httpx.get(url + "/", timeout=1)
    except httpx.HTTPError:
        return False
    return True


def failovers(tmp: Path, model: ScriptedModel, repetitions: int, heartbeat_s: float,
              liveness_s: float) -> dict[str, Any]:
    moto, endpoint = start_moto(tmp / "moto.log")
    bucket = f"bench-{uuid.uuid4().hex[:10]}"
    creds = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_EC2_METADATA_DISABLED": "true"}
    httpx.put(f"{endpoint}/{bucket}", timeout=30).raise_for_status()
    blobs = {"ASH_SNAPSHOT_URL": f"s3://{bucket}/snapshots/", "ASH_S3_ENDPOINT": endpoint,
             "ASH_S3_REGION": "us-east-1", **creds}
    timing = {"ASH_RUNNER_HEARTBEAT_S": str(heartbeat_s), "ASH_RUNNER_LIVENESS_TIMEOUT_S": str(liveness_s)}
    phases: dict[str, list[float]] = {"total": [], "detect": [], "resume": [], "first_event": []}
    deployment = Deployment(tmp / "failover", model)
    with backend_database("postgres") as db:
        try:
            coordinator = deployment.daemon("coordinator", db, {"ASH_MODE": "coordinator",
                                                                "ASH_INTERNAL_SECRET": SECRET, **timing, **blobs})
            runners = {name: deployment.runner(name, coordinator, {**timing, **blobs}) for name in ("r1", "r2")}
            with httpx.Client(base_url=coordinator.url, headers=coordinator.headers, timeout=120) as api:
                sid = session_on(coordinator, api)
                for _ in range(repetitions):
                    first_event_ms(api, sid)  # it answers where it is; its snapshot is saved after the turn
                    time.sleep(1.0)  # the post-turn snapshot reaches the blob store
                    host = api.get(f"/api/sessions/{sid}").json()["session"]["runnerId"]
                    killed_at = time.perf_counter()
                    runners[host].stop(signal.SIGKILL)
                    until("the sweep pauses the session",
                          lambda: api.get(f"/api/sessions/{sid}").json()["session"]["status"] == "paused")
                    paused_at = time.perf_counter()
                    until("the resume", lambda: api.post(f"/api/sessions/{sid}/resume").status_code == 200)
                    resumed_at = time.perf_counter()
                    first = first_event_ms(api, sid)
                    phases["detect"].append((paused_at - killed_at) * 1000)
                    phases["resume"].append((resumed_at - paused_at) * 1000)
                    phases["first_event"].append(first)
                    phases["total"].append((resumed_at - killed_at) * 1000 + first)
                    moved = api.get(f"/api/sessions/{sid}").json()["session"]["runnerId"]
                    assert moved != host, (host, moved)
                    runners[host] = deployment.restart(runners[host])  # sweeps what SIGKILL left; the next spare
        finally:
            deployment.stop()
            moto.terminate()
            moto.wait(10)
    return {"repetitions": repetitions, "heartbeat_s": heartbeat_s, "liveness_timeout_s": liveness_s,
            "phases_ms": {name: summary(values) for name, values in phases.items()},
            "raw_total_ms": [round(v, 1) for v in phases["total"]]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="creates per path")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--failovers", type=int, default=3)
    parser.add_argument("--heartbeat", type=float, default=0.5)
    parser.add_argument("--liveness-timeout", type=float, default=3.0)
    parser.add_argument("--out", type=Path, help="where to write the JSON (not benchmarks/results under load)")
    args = parser.parse_args()
    model = ScriptedModel()
    model.start()
    tmp = scratch("ashd-scale-bench-")
    load_before = [round(x, 2) for x in os.getloadavg()]
    try:
        report: dict[str, Any] = {"loadavg_at_start": load_before}
        if args.rounds:
            report["create"] = creates(tmp, model, args.rounds, args.warmup)
        if args.failovers:
            report["failover"] = failovers(tmp, model, args.failovers, args.heartbeat, args.liveness_timeout)
        report["machine"] = machine()
    finally:
        model.stop()
    emit(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
