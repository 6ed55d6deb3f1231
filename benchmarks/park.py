"""Parked vs warm sessions (issue #17): memory per session, wake latency, warm latency.

Method: one ashd (SQLite, the default bwrap sandbox, ``ASH_PARK_AFTER_MS`` short) and the
scripted model in this process. ``--sessions`` sessions each get one message that writes a file.
Then, per round and session: wait until it is parked (``runtime: parked`` in its JSON) and take
the PSS of its sandbox processes (its cgroup: bwrap, CLI; and its bridge); send a message (the
wake: time to the first model event and to ``done``); send another at once (warm: the same two
figures) and take its PSS again, warm. Figures: median and p90 in ms, PSS in MiB, and
how many idle sessions of each kind 8 GiB holds (sandbox processes only; ashd's own memory is
shared by all sessions).

    .venv/bin/python benchmarks/park.py --rounds 5 --out benchmarks/results/park.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ashd.scripted.server import ScriptedModel  # noqa: E402
from benchmarks.message_latency import emit, machine, percentile  # noqa: E402
from tests.support.daemon import AshdProcess  # noqa: E402
from tests.support.sandboxes import cmdline, sandbox_pids  # noqa: E402

AGENT = str(REPO / "examples" / "hello-agent")
MIB = 1 << 20
PARK_AFTER_MS = 2000


def pss_mib(daemon: AshdProcess, sid: str) -> float:
    """The session's sandbox cgroup (bwrap, CLI) and its bridge (outside the cgroup)."""
    bridges = {p.pid for p in daemon.descendants() if "ashd.bridge" in cmdline(p.pid) and sid in cmdline(p.pid)}
    total = 0
    for pid in sandbox_pids(daemon, sid) | bridges:
        try:
            total += psutil.Process(pid).memory_full_info().pss
        except psutil.Error:
            pass
    return total / MIB


def message_ms(c: httpx.Client, sid: str, content: str) -> tuple[float, float]:
    """(first model event, done) in ms after the POST."""
    began, first = time.perf_counter(), 0.0
    with c.stream("POST", f"/api/sessions/{sid}/messages", json={"content": content}) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not first and line.startswith("event:") and "session_start" not in line:
                first = time.perf_counter()
    return (first - began) * 1000, (time.perf_counter() - began) * 1000


def wait_parked(c: httpx.Client, sid: str) -> None:
    deadline = time.monotonic() + 60
    while c.get(f"/api/sessions/{sid}").json()["session"]["runtime"] != "parked":
        if time.monotonic() > deadline:
            raise RuntimeError(f"session {sid} was not parked")
        time.sleep(0.05)


def summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50": round(statistics.median(values), 1), "p90": round(percentile(values, 0.9), 1)}


def run(rounds: int, sessions: int) -> dict[str, Any]:
    model = ScriptedModel()
    model.start()
    tmp = Path(tempfile.mkdtemp(prefix="ashd-bench-"))
    env = {"ASH_LOG_LEVEL": "warning", "ASH_PARK_AFTER_MS": str(PARK_AFTER_MS)}
    daemon = AshdProcess(tmp / "data", model.base_url, extra_env=env).start()
    figures: dict[str, list[float]] = {k: [] for k in (
        "warm_pss_mib", "parked_pss_mib", "wake_first_event_ms", "wake_done_ms", "warm_first_event_ms",
        "warm_done_ms")}
    try:
        with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=120) as c:
            c.post("/api/agents", json={"name": "hello", "path": AGENT}).raise_for_status()
            sids = [c.post("/api/sessions", json={"agent": "hello"}).json()["session"]["id"] for _ in range(sessions)]
            for n, sid in enumerate(sids):
                message_ms(c, sid, f"[[bash: echo file-{n} > kept.txt]] [[say: remember file-{n}]]")
            for _ in range(rounds):
                for sid in sids:
                    wait_parked(c, sid)
                    figures["parked_pss_mib"].append(pss_mib(daemon, sid))
                for sid in sids:
                    first, done = message_ms(c, sid, "[[echo-history]]")
                    figures["wake_first_event_ms"].append(first)
                    figures["wake_done_ms"].append(done)
                    first, done = message_ms(c, sid, "[[say: ok]]")
                    figures["warm_first_event_ms"].append(first)
                    figures["warm_done_ms"].append(done)
                    figures["warm_pss_mib"].append(pss_mib(daemon, sid))  # before it parks again
            metrics = c.get("/metrics").text
            isolation = c.get("/health").json().get("isolation", {})
    finally:
        daemon.stop()
        model.stop()
    warm = statistics.median(figures["warm_pss_mib"])
    parked = statistics.median(figures["parked_pss_mib"])
    wakes = [line for line in metrics.splitlines() if line.startswith("ashd_session_wakes_total")]
    return {
        "rounds": rounds,
        "sessions": sessions,
        "park_after_ms": PARK_AFTER_MS,
        "pss_mib_per_session": {"warm": round(warm, 1), "parked": round(parked, 1)},
        "idle_sessions_in_8_gib": {"warm": int(8192 // warm) if warm else None,
                                   "parked": int(8192 // parked) if parked else "unbounded by sandbox memory"},
        "latency_ms": {k: summary(v) for k, v in figures.items() if k.endswith("_ms")},
        "wakes_counted": wakes[0].split()[-1] if wakes else None,
        "ash_published": {"idle_pss_mib": 15, "message_ms": 1168},
        "launcher": isolation.get("launcher", "unknown"),
        "machine": machine(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    emit(run(args.rounds, args.sessions), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
