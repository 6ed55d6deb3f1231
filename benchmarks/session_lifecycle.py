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

``--scenarios`` measures a subset (the pre-warmed create always runs when a resume is asked:
its session is the one resumed). ``--baseline-repo`` starts a second ashd from another
checkout (``git archive main | tar -x -C /tmp/base``) and runs its rounds interleaved with
this one's, the order alternating per round; its figures are under ``baseline``.

    .venv/bin/python benchmarks/session_lifecycle.py --rounds 20 --out benchmarks/results/session_lifecycle.json
    .venv/bin/python benchmarks/session_lifecycle.py --rounds 20 --scenarios create_prewarmed,resume_warm \
        --baseline-repo /tmp/base --out /tmp/sl.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ashd.scripted.server import ScriptedModel  # noqa: E402
from benchmarks.message_latency import emit, machine, percentile  # noqa: E402
from benchmarks.scratch import scratch  # noqa: E402
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


SCENARIOS = ("create_cold", "create_prewarmed", "resume_warm", "resume_cold")


class Target:
    """One ashd under measurement, its client and its figures."""

    def __init__(self, root: Path, model_url: str, repo: Path) -> None:
        self.repo = repo
        root.mkdir(parents=True)
        self.daemon = AshdProcess(root / "data", model_url, extra_env={"ASH_LOG_LEVEL": "warning"}, repo=repo).start()
        self.client = httpx.Client(base_url=self.daemon.url, headers=self.daemon.headers, timeout=120)
        self.api: dict[str, list[float]] = {k: [] for k in SCENARIOS}
        self.ttft: dict[str, list[float]] = {k: [] for k in SCENARIOS}
        c = self.client
        c.post("/api/agents", json={"name": "cold", "path": AGENT}).raise_for_status()
        c.post("/api/agents", json={"name": "warm", "path": AGENT}).raise_for_status()
        c.patch("/api/agents/warm/config", json={"preWarmCount": 1}).raise_for_status()

    def round(self, scenarios: set[str]) -> None:
        c, api, ttft = self.client, self.api, self.ttft
        if "create_cold" in scenarios:
            began, ms, body = timed(lambda: c.post("/api/sessions", json={"agent": "cold", "model": "claude-x"}))
            api["create_cold"].append(ms)
            ttft["create_cold"].append(first_event_ms(c, body["session"]["id"], began))
            c.delete(f"/api/sessions/{body['session']['id']}")
        if not scenarios & {"create_prewarmed", "resume_warm", "resume_cold"}:
            return
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
        if scenarios & {"resume_warm", "resume_cold"}:
            c.post(f"/api/sessions/{sid}/pause").raise_for_status()
            began, ms, _ = timed(lambda: c.post(f"/api/sessions/{sid}/resume"))
            api["resume_warm"].append(ms)
            ttft["resume_warm"].append(first_event_ms(c, sid, began))
        if "resume_cold" in scenarios:
            c.post(f"/api/sessions/{sid}/stop").raise_for_status()
            began, ms, _ = timed(lambda: c.post(f"/api/sessions/{sid}/resume"))
            api["resume_cold"].append(ms)
            ttft["resume_cold"].append(first_event_ms(c, sid, began))
        c.delete(f"/api/sessions/{sid}")

    def figures(self) -> dict[str, Any]:
        return {"api_latency": {k: summary(v) for k, v in self.api.items() if v},
                "time_to_first_event": {k: summary(v) for k, v in self.ttft.items() if v}}

    def close(self) -> None:
        self.client.close()
        self.daemon.stop()


def run(rounds: int, scenarios: set[str], baseline_repo: Path | None = None) -> dict[str, Any]:
    model = ScriptedModel()
    model.start()
    tmp = scratch("ashd-bench-")
    targets: dict[str, Target] = {}
    try:
        targets["new"] = Target(tmp / "new", model.base_url, REPO)
        if baseline_repo is not None:
            targets["base"] = Target(tmp / "base", model.base_url, baseline_repo)
        for i in range(rounds):  # interleaved: the order alternates each round
            for name in (sorted(targets) if i % 2 else sorted(targets, reverse=True)):
                targets[name].round(scenarios)
        isolation = targets["new"].client.get("/health").json().get("isolation", {})
        figures = {name: t.figures() for name, t in targets.items()}
    finally:
        for t in targets.values():
            t.close()
        model.stop()
    out: dict[str, Any] = {"rounds": rounds, **figures["new"]}
    if "base" in figures:
        out["baseline"] = {"repo": str(baseline_repo), **figures["base"]}
    return {
        **out,
        "ash_published_sqlite_api_p50_ms": {"create": 44, "resume_warm": 1.7, "resume_cold": 32},
        "launcher": isolation.get("launcher", "unknown"),
        "load_average": list(os.getloadavg()),
        "machine": machine(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help="comma-separated subset of: " + ", ".join(SCENARIOS))
    parser.add_argument("--baseline-repo", type=Path,
                        help="another checkout (e.g. git archive main) measured interleaved, under 'baseline'")
    args = parser.parse_args()
    scenarios = set(args.scenarios.split(","))
    if unknown := scenarios - set(SCENARIOS):
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    emit(run(args.rounds, scenarios, args.baseline_repo), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
