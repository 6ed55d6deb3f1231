"""What a message costs when it goes through another coordinator than the last one (a handover).

Method: one scripted model server (in this process); two coordinators on one fresh Postgres
database and one runner, real ashd processes with the default isolating launcher. One session.
Each round sends a message through the coordinator that ran the last turn (``stay``: it owns
the session's sandbox) and then one through the other coordinator (``handover``: it asks the
owner to release the idle session, takes its lease and adopts the live sandbox on the runner,
warm). Timed from the POST to the first SSE ``text_delta`` (time to first event) and to ``done``.
Reported: median, p90, mean per kind, and handover minus stay: the cost of the handover.

    .venv/bin/python benchmarks/handover.py --rounds 20 --out benchmarks/results/handover.json
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
from benchmarks.runner_overhead import session_on  # noqa: E402
from benchmarks.scratch import scratch  # noqa: E402
from tests.store.pg import backend_database  # noqa: E402
from tests.support.daemon import AshdProcess, free_port  # noqa: E402

SECRET = "handover-benchmark-secret"
KEY = "ash_handover_benchmark_key"
QUIET = {"ASH_LOG_LEVEL": "warning", "ASH_API_KEY": KEY}


def run(rounds: int, warmup: int) -> dict[str, Any]:
    model = ScriptedModel()
    model.start()
    tmp = scratch("ashd-handover-bench-")
    started: list[AshdProcess] = []
    results: dict[str, list[float]] = {"stay_first": [], "stay_e2e": [], "handover_first": [], "handover_e2e": []}
    with backend_database("postgres") as db:
        try:
            env = {**QUIET, "ASH_MODE": "coordinator", "ASH_INTERNAL_SECRET": SECRET}
            a = AshdProcess(tmp / "a", model.base_url, db, env).start(timeout=120)
            started.append(a)
            b = AshdProcess(tmp / "b", model.base_url, db, env).start(timeout=120)
            started.append(b)
            port = free_port()
            runner = AshdProcess(tmp / "runner", model.base_url, None, {
                **QUIET, "ASH_MODE": "runner", "ASH_RUNNER_ID": "bench-runner", "ASH_RUNNER_PORT": str(port),
                "ASH_SERVER_URL": f"{a.url},{b.url}", "ASH_INTERNAL_SECRET": SECRET}, port=port)
            runner.health_path = "/runner/health"
            started.append(runner.start(timeout=120))
            headers = {"Authorization": f"Bearer {KEY}"}
            with (httpx.Client(base_url=a.url, headers=headers, timeout=120) as on_a,
                  httpx.Client(base_url=b.url, headers=headers, timeout=120) as on_b):
                sid = session_on(a, on_a)
                wait_linked(on_b, sid)
                owner, other = on_a, on_b
                for _ in range(warmup):
                    ashd_turn(owner, sid)
                    when_ready(other, sid)
                    owner, other = other, owner
                for _ in range(rounds):
                    first, e2e = ashd_turn(owner, sid)
                    results["stay_first"].append(first)
                    results["stay_e2e"].append(e2e)
                    first, e2e = ashd_turn(other, sid)
                    results["handover_first"].append(first)
                    results["handover_e2e"].append(e2e)
                    owner, other = other, owner
        finally:
            for daemon in reversed(started):
                daemon.stop()
            model.stop()
    stats = {name: summary(values) for name, values in results.items()}
    added = {f"{kind}_{stat}": round(stats[f"handover_{kind}"][stat] - stats[f"stay_{kind}"][stat], 2)
             for kind in ("first", "e2e") for stat in ("median_ms", "p90_ms", "mean_ms")}
    return {"prompt": PROMPT, "rounds": rounds, "warmup": warmup, "stats": stats, "handover_added": added,
            "machine": machine()}


def when_ready(client: httpx.Client, sid: str) -> None:
    """A first message through a coordinator: retried while it answers 503 (its own link to the
    runner is not up yet: the registry shows the runner before every link is made)."""
    deadline = time.monotonic() + 120
    while True:
        resp = client.post(f"/api/sessions/{sid}/messages", json={"content": PROMPT})
        if resp.status_code == 200:
            return
        if resp.status_code != 503 or time.monotonic() > deadline:
            raise RuntimeError(f"message through {client.base_url}: {resp.status_code} {resp.text[:300]}")
        time.sleep(float(resp.headers.get("Retry-After", "1")))


def wait_linked(client: httpx.Client, sid: str) -> None:
    """B answers for the session once its own link to the runner is up (503 until then)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if client.get(f"/api/sessions/{sid}").status_code == 200 and client.get("/health").json().get(
                "remoteRunners"):
            return
        time.sleep(0.2)
    raise RuntimeError("coordinator B never saw the runner")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    emit(run(args.rounds, args.warmup), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
