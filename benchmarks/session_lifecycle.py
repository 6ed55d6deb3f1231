"""Session create (pre-warmed and cold), warm resume and cold resume, through a real ashd.

Method: one ashd (SQLite, the default bwrap sandbox) and the scripted model in this process.
For each scenario, ``--rounds`` repetitions, each timed as the API call's latency and as the
time from issuing the call to the first SSE event of a following message (``ttft``: what a
user waits for). Scenarios:

- create_cold: ``POST /api/sessions`` with a session-specific option (so no pre-warm applies);
  ashd starts the sandbox and the CLI before answering.
- create_prewarmed: ``POST /api/sessions`` for an agent with ``preWarmCount: 1``, after the
  pre-warmed sandbox is ready (the claim path).
- resume_warm: ``pause`` then ``resume`` (agent process kept alive).
- resume_cold: ``stop`` then ``resume``: a new sandbox, files from the snapshot, conversation
  from the stored transcript (each session has a file and one prior turn).

    .venv/bin/python benchmarks/session_lifecycle.py --rounds 20 --out benchmarks/results/session_lifecycle.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ashd.scripted.server import ScriptedModel  # noqa: E402
from benchmarks.message_latency import emit, machine, percentile  # noqa: E402
from tests.support.daemon import AshdProcess  # noqa: E402

AGENT = str(REPO / "examples" / "hello-agent")


def summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50_ms": round(statistics.median(values), 1),
            "p99_ms": round(percentile(values, 0.99), 1), "mean_ms": round(statistics.fmean(values), 1)}


def first_event_ms(c: httpx.Client, sid: str, since: float) -> float:
    first = 0.0
    with c.stream("POST", f"/api/sessions/{sid}/messages", json={"content": "[[say: ok]]"}) as r:
        for line in r.iter_lines():  # read to the end; remember the first model event
            if not first and line.startswith("event:") and "session_start" not in line:
                first = time.perf_counter()
    return (first - since) * 1000


def timed(call: Callable[[], httpx.Response]) -> tuple[float, float, dict[str, Any]]:
    began = time.perf_counter()
    resp = call()
    resp.raise_for_status()
    return began, (time.perf_counter() - began) * 1000, resp.json()


def wait_warm(c: httpx.Client, want: int) -> None:
    deadline = time.monotonic() + 60
    while c.get("/health").json()["pool"]["warm"] < want:
        if time.monotonic() > deadline:
            raise RuntimeError("pre-warmed sandbox did not become ready")
        time.sleep(0.05)


def run(rounds: int) -> dict[str, Any]:
    model = ScriptedModel()
    model.start()
    tmp = Path(tempfile.mkdtemp(prefix="ashd-bench-"))
    daemon = AshdProcess(tmp / "data", model.base_url, extra_env={"ASH_LOG_LEVEL": "warning"}).start()
    api: dict[str, list[float]] = {k: [] for k in ("create_cold", "create_prewarmed", "resume_warm", "resume_cold")}
    ttft: dict[str, list[float]] = {k: [] for k in api}
    try:
        with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=120) as c:
            c.post("/api/agents", json={"name": "cold", "path": AGENT}).raise_for_status()
            c.post("/api/agents", json={"name": "warm", "path": AGENT}).raise_for_status()
            c.patch("/api/agents/warm/config", json={"preWarmCount": 1}).raise_for_status()
            for _ in range(rounds):
                began, ms, body = timed(lambda: c.post("/api/sessions", json={"agent": "cold", "model": "claude-x"}))
                api["create_cold"].append(ms)
                ttft["create_cold"].append(first_event_ms(c, body["session"]["id"], began))
                c.delete(f"/api/sessions/{body['session']['id']}")

                wait_warm(c, 1)
                hits = c.get("/health").json()["pool"]["preWarmHits"]
                began, ms, body = timed(lambda: c.post("/api/sessions", json={"agent": "warm"}))
                assert c.get("/health").json()["pool"]["preWarmHits"] == hits + 1, "pre-warm not claimed"
                api["create_prewarmed"].append(ms)
                sid = body["session"]["id"]
                ttft["create_prewarmed"].append(first_event_ms(c, sid, began))
                with c.stream("POST", f"/api/sessions/{sid}/messages",
                              json={"content": "[[bash: echo kept > kept.txt]]"}) as r:
                    r.read()

                c.post(f"/api/sessions/{sid}/pause").raise_for_status()
                began, ms, _ = timed(lambda sid=sid: c.post(f"/api/sessions/{sid}/resume"))
                api["resume_warm"].append(ms)
                ttft["resume_warm"].append(first_event_ms(c, sid, began))

                c.post(f"/api/sessions/{sid}/stop").raise_for_status()
                began, ms, _ = timed(lambda sid=sid: c.post(f"/api/sessions/{sid}/resume"))
                api["resume_cold"].append(ms)
                ttft["resume_cold"].append(first_event_ms(c, sid, began))
                c.delete(f"/api/sessions/{sid}")
            isolation = c.get("/health").json().get("isolation", {})
    finally:
        daemon.stop()
        model.stop()
    return {
        "rounds": rounds,
        "api_latency": {k: summary(v) for k, v in api.items()},
        "time_to_first_event": {k: summary(v) for k, v in ttft.items()},
        "ash_published_sqlite_api_p50_ms": {"create": 44, "resume_warm": 1.7, "resume_cold": 32},
        "launcher": isolation.get("launcher", "unknown"),
        "machine": machine(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    emit(run(args.rounds), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
