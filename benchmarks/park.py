"""Parked vs warm sessions (issue #17): memory per session, wake latency, warm latency.

Method: one ashd (SQLite, the default bwrap sandbox, ``ASH_PARK_AFTER_MS`` short) and the
scripted model in this process. ``--sessions`` sessions each get one message that writes a file.
Then, per round and session: wait until it is parked (``runtime: parked`` in its JSON) and take
the PSS of its sandbox processes (its cgroup: bwrap, CLI; and its bridge); send a message (the
wake: time to the first model event and to ``done``); send another at once (warm: the same two
figures) and take its PSS again, warm. Figures: median and p90 in ms, PSS in MiB.

How many idle sessions fit in 8 GiB (``--fill 40,160,400``): then more sessions are created,
each sent one message and left to park, up to each count in turn. The PSS of everything ashd
keeps (the daemon and every process beneath it: with every session parked, the daemon and the
bridge zygote; no bridge, CLI or bwrap is left, which is checked) is taken before the fill,
and at each count once all are parked and again once their idle session actors were retired
(``ASH_SESSION_ACTOR_IDLE_S``). A line fitted through (0, before) and the counts gives ashd's
growth per parked session (the slope) and shows whether it is linear (R², largest residual).
A few sessions are woken at the end (they answer with their history). 8 GiB holds
(8 GiB - ashd before) / (per-session cost): a parked session costs the slope; a warm one
adds its sandbox's PSS (CLI, bridge, bwrap). The counts are measured; the 8 GiB figure is
extrapolated from the slope beyond the largest count.

    .venv/bin/python benchmarks/park.py --rounds 3 --fill 40,160,400 --out benchmarks/results/park.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ashd.scripted.server import ScriptedModel  # noqa: E402
from benchmarks.message_latency import emit, machine, percentile  # noqa: E402
from benchmarks.scratch import scratch  # noqa: E402
from tests.support.daemon import AshdProcess  # noqa: E402
from tests.support.sandboxes import cmdline, sandbox_pids  # noqa: E402

AGENT = str(REPO / "examples" / "hello-agent")
MIB = 1 << 20
PARK_AFTER_MS = 2000
ACTOR_IDLE_S = 20  # session actors retire this long after their last request (default 300)
GIB8_MIB = 8192
FILL_CLIENTS = 3


def gauge(c: httpx.Client, name: str) -> float:
    for line in c.get("/metrics").text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise RuntimeError(f"no {name} in /metrics")


def wait_for(check: Any, what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.5)


def all_parked(c: httpx.Client) -> bool:
    return gauge(c, "ashd_warm_sessions") == 0 and gauge(c, "ashd_parked_sessions") > 0


def until_served(send: Any) -> httpx.Response:
    """Again while ashd answers 503 (its start queue or warm cap is full), as Retry-After says."""
    while True:
        r = send()
        if r.status_code != 503:
            r.raise_for_status()
            return r
        time.sleep(float(r.headers.get("Retry-After", "1")))


def ashd_tree(daemon: AshdProcess) -> dict[str, Any]:
    """PSS of the daemon and every process beneath it, and how many of those are agent
    processes (bridges, CLIs, bwrap: a parked session keeps none)."""
    assert daemon.proc is not None
    total, agents = 0, 0
    for proc in [psutil.Process(daemon.proc.pid), *daemon.descendants()]:
        try:
            total += proc.memory_full_info().pss
            cmd = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        agents += ("ashd.bridge" in cmd and "zygote" not in cmd) or "bwrap" in cmd or "claude" in cmd
    return {"pss_mib": total / MIB, "agent_processes": agents}


def linear_fit(points: list[tuple[float, float]]) -> dict[str, float]:
    """Least squares y = intercept + slope * x, with R² and the largest residual (MiB)."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0
    intercept = my - slope * mx
    residuals = [y - (intercept + slope * x) for x, y in points]
    total = sum((y - my) ** 2 for y in ys)
    r2 = 1 - sum(r * r for r in residuals) / total if total else 1.0
    return {"slope_mib_per_session": round(slope, 4), "intercept_mib": round(intercept, 1),
            "r_squared": round(r2, 4), "max_residual_mib": round(max(abs(r) for r in residuals), 2)}


def fill(c: httpx.Client, daemon: AshdProcess, counts: list[int], warm_pss: float) -> dict[str, Any]:
    """Sessions with one message each, left to park, up to each of ``counts`` (cumulative,
    ascending): ashd's process tree measured at each count, its growth fitted to a line."""
    wait_for(lambda: all_parked(c), "every session parked", 120)
    time.sleep(ACTOR_IDLE_S + 10)  # the measured sessions' actors retire too: the baseline holds none
    base_tree, parked_before = ashd_tree(daemon), gauge(c, "ashd_parked_sessions")
    began = time.monotonic()

    def one(n: int) -> str:
        sid = until_served(lambda: c.post("/api/sessions", json={"agent": "hello"})).json()["session"]["id"]
        until_served(lambda: c.post(f"/api/sessions/{sid}/messages", json={"content": f"[[say: parked number {n}]]"}))
        return str(sid)

    sids: list[str] = []
    stages: list[dict[str, Any]] = []
    for k in counts:
        with ThreadPoolExecutor(FILL_CLIENTS) as clients:  # ashd starts two CLIs at once on 2 cores
            sids += list(clients.map(one, range(len(sids), k)))
        wait_for(lambda: all_parked(c), "every session parked", 600)
        live = ashd_tree(daemon)
        # A create refused under load (503: its start took too long) may still finish: count them all.
        added = int(gauge(c, "ashd_parked_sessions") - parked_before)
        time.sleep(ACTOR_IDLE_S + 10)  # their session actors retire (nothing of them stays in memory but caches)
        retired = ashd_tree(daemon)
        stages.append({"sessions_messaged": k, "sessions_parked": added,
                       "seconds_since_fill_began": round(time.monotonic() - began, 1),
                       "ashd_tree_pss_mib": {"actor_live": round(live["pss_mib"], 1),
                                             "actors_retired": round(retired["pss_mib"], 1)},
                       "agent_processes_left": retired["agent_processes"]})
    picked = (0, len(sids) // 2, len(sids) - 1)
    answers = [until_served(lambda n=n: c.post(f"/api/sessions/{sids[n]}/messages",
                                               json={"content": "[[echo-history]]"})).text for n in picked]
    base = base_tree["pss_mib"]
    points = [(0.0, base)] + [(float(st["sessions_parked"]), st["ashd_tree_pss_mib"]["actors_retired"])
                              for st in stages]
    live_points = [(0.0, base)] + [(float(st["sessions_parked"]), st["ashd_tree_pss_mib"]["actor_live"])
                                   for st in stages]
    fit, live_fit = linear_fit(points), linear_fit(live_points)
    per_parked = max(fit["slope_mib_per_session"], 0.0)
    per_parked_live = max(live_fit["slope_mib_per_session"], 0.0)
    room = GIB8_MIB - base
    most = stages[-1]["sessions_parked"]
    return {
        "counts": stages,
        "ashd_tree_pss_mib_before": round(base, 1),
        "agent_processes_before": base_tree["agent_processes"],
        "fit_actors_retired": fit,
        "fit_actor_live": live_fit,
        "ashd_growth_per_parked_session_mib": {"actor_live": round(per_parked_live, 4),
                                               "actor_retired": round(per_parked, 4)},
        "woken_after_fill_answered_with_history": all(
            f"parked number {n}" in text for n, text in zip(picked, answers, strict=True)),
        "measured_up_to_parked_sessions": most,
        "idle_sessions_in_8_gib": {
            "warm": int(room // (warm_pss + per_parked)),
            "parked": int(room // per_parked) if per_parked > 0 else f"more than {most}",
            "parked_actor_live": int(room // per_parked_live) if per_parked_live > 0 else f"more than {most}",
            "method": f"(8 GiB - ashd's tree PSS before the fill, {base:.0f} MiB) / the fitted slope of ashd's tree "
                      f"PSS over {len(stages)} measured counts up to {most} parked sessions (parked; actor_live: "
                      "before their idle session actors retired); warm adds the median PSS of a warm session's "
                      "sandbox (CLI, bridge, bwrap). Measured up to that count, extrapolated beyond it; memory "
                      "only: disk (workspace images, snapshots) and the database are not counted.",
        },
    }


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


def run(rounds: int, sessions: int, k: list[int]) -> dict[str, Any]:
    load_start = os.getloadavg()
    model = ScriptedModel()
    model.start()
    tmp = scratch("ashd-bench-")
    env = {"ASH_LOG_LEVEL": "warning", "ASH_PARK_AFTER_MS": str(PARK_AFTER_MS),
           "ASH_SESSION_ACTOR_IDLE_S": str(ACTOR_IDLE_S), "ASH_SANDBOX_DISK_MB": "64"}
    daemon = AshdProcess(tmp / "data", model.base_url, extra_env=env).start()
    figures: dict[str, list[float]] = {k: [] for k in (
        "warm_pss_mib", "parked_pss_mib", "wake_first_event_ms", "wake_done_ms", "warm_first_event_ms",
        "warm_done_ms")}
    try:
        with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=600) as c:
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
            capacity = fill(c, daemon, k, statistics.median(figures["warm_pss_mib"])) if k else None
            metrics = c.get("/metrics").text
            isolation = c.get("/health").json().get("isolation", {})
    finally:
        daemon.stop()
        model.stop()
    warm = statistics.median(figures["warm_pss_mib"])
    parked = statistics.median(figures["parked_pss_mib"])
    wakes = [line for line in metrics.splitlines() if line.startswith("ashd_session_wakes_total")]
    return {
        "loadavg_at_start": [round(x, 2) for x in load_start],
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        "rounds": rounds,
        "sessions": sessions,
        "park_after_ms": PARK_AFTER_MS,
        "pss_mib_per_session": {"warm": round(warm, 1), "parked": round(parked, 1)},
        "idle_sessions_in_8_gib": capacity.pop("idle_sessions_in_8_gib") if capacity else None,
        "capacity": capacity,
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
    parser.add_argument("--fill", type=lambda v: sorted({int(n) for n in v.split(",")}), default=[],
                        help="counts of parked sessions to measure ashd at for the 8 GiB figure, e.g. 40,160,400")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    emit(run(args.rounds, args.sessions, args.fill), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
