"""Added latency of a message through coordinator -> runner versus standalone.

Method: one scripted model server (in this process) answers every path identically. Three
real ashd processes on one fresh Postgres database each (two databases): a standalone ashd,
and a coordinator with one runner (the runner's sandbox talks to the model through the
runner's own model proxy; the coordinator relays the bridge socket over the runner link).
Both use the default isolating launcher (bwrap, cgroups, proxies). One session on each,
warmed up; then rounds alternate between the two in blocks of BLOCK so drift on the machine
hits both. Timed from the POST to the first SSE ``text_delta`` (time to first event) and to
``done`` (end to end). Reported: median, p90, p99, mean per path, and remote minus standalone.

    .venv/bin/python benchmarks/runner_overhead.py --rounds 40 --out benchmarks/results/runner_overhead.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ashd.scripted.server import ScriptedModel  # noqa: E402
from benchmarks.message_latency import PROMPT, ashd_turn, emit, machine, summary  # noqa: E402
from benchmarks.scratch import scratch  # noqa: E402
from tests.store.pg import backend_database  # noqa: E402
from tests.support.daemon import AshdProcess, free_port  # noqa: E402

BLOCK = 5
SECRET = "runner-overhead-benchmark-secret"
QUIET = {"ASH_LOG_LEVEL": "warning"}


def session_on(daemon: AshdProcess, client: httpx.Client) -> str:
    client.post("/api/agents", json={"name": "bench", "path": str(REPO / "examples" / "hello-agent")})
    deadline = time.monotonic() + 120
    while True:  # a coordinator answers 503 until its link to the runner is up
        resp = client.post("/api/sessions", json={"agent": "bench"})
        if resp.status_code == 201:
            return str(resp.json()["session"]["id"])
        if time.monotonic() > deadline:
            raise RuntimeError(f"no session on {daemon.url}: {resp.text}")
        time.sleep(0.2)


def run(rounds: int, warmup: int) -> dict[str, Any]:
    model = ScriptedModel()
    model.start()
    tmp = scratch("ashd-runner-bench-")
    started: list[AshdProcess] = []
    results: dict[str, list[float]] = {"standalone_first": [], "standalone_e2e": [], "remote_first": [],
                                       "remote_e2e": []}
    with backend_database("postgres") as db_a, backend_database("postgres") as db_b:
        try:
            standalone = AshdProcess(tmp / "standalone", model.base_url, db_a, QUIET).start(timeout=120)
            started.append(standalone)
            coordinator = AshdProcess(tmp / "coordinator", model.base_url, db_b, {
                **QUIET, "ASH_MODE": "coordinator", "ASH_INTERNAL_SECRET": SECRET}).start(timeout=120)
            started.append(coordinator)
            port = free_port()
            runner = AshdProcess(tmp / "runner", model.base_url, None, {
                **QUIET, "ASH_MODE": "runner", "ASH_RUNNER_ID": "bench-runner", "ASH_RUNNER_PORT": str(port),
                "ASH_SERVER_URL": coordinator.url, "ASH_INTERNAL_SECRET": SECRET}, port=port)
            runner.health_path = "/runner/health"
            started.append(runner.start(timeout=120))
            with (httpx.Client(base_url=standalone.url, headers=standalone.headers, timeout=120) as local,
                  httpx.Client(base_url=coordinator.url, headers=coordinator.headers, timeout=120) as remote):
                paths = {"standalone": (local, session_on(standalone, local)),
                         "remote": (remote, session_on(coordinator, remote))}
                for _ in range(warmup):
                    for client, sid in paths.values():
                        ashd_turn(client, sid)
                done = 0
                while done < rounds:
                    block = min(BLOCK, rounds - done)
                    for name, (client, sid) in paths.items():
                        for _ in range(block):
                            first, e2e = ashd_turn(client, sid)
                            results[f"{name}_first"].append(first)
                            results[f"{name}_e2e"].append(e2e)
                    done += block
        finally:
            for daemon in reversed(started):
                daemon.stop()
            model.stop()
    stats = {name: summary(values) for name, values in results.items()}
    added = {f"{kind}_{stat}": round(stats[f"remote_{kind}"][stat] - stats[f"standalone_{kind}"][stat], 2)
             for kind in ("first", "e2e") for stat in ("median_ms", "p90_ms", "p99_ms", "mean_ms")}
    return {"prompt": PROMPT, "rounds": rounds, "warmup": warmup, "block": BLOCK, "stats": stats,
            "remote_added": added, "machine": machine()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    emit(run(args.rounds, args.warmup), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
