"""Load: N sessions created at once, then M messages from each, all sessions at once (issue #18).

Method: for each N, a fresh ashd (SQLite, the default bwrap sandbox, the README's defaults
with the per-key rate limits lifted and 256 MiB workspace quotas, so disk admission admits
the burst) and the scripted model in this process, loopback only.
N creates are sent at once (one thread each); then every created session sends M messages
one after another, all sessions at once, each asking for a unique token; then each session's
stored messages are read back. Meanwhile a sampler polls ``/health`` (must stay 200), the
daemon's process tree's resident memory (peak) and the host's load average (other engineers'
tests share this machine: figures under load are not quiet-machine figures), and a second
tenant probes fairness from the burst's first create to its last reply: again and again, it
creates a session, times its create and its first reply, ends it and waits 2 s.
Every call has the timeout of Ash's Python client (``ash_sdk.AshClient``: 300 s; a create
slower than that is a failed create) and each N a deadline, so the run stops by itself.

Reported per N: creates ok, create wall time, median and max, messages ok, msgs/s, message
latency p50/p99, lost (a token not stored exactly once, or a reply without its token),
/health failures, peak memory, the load average (min/max while it ran), the other tenant's
probes (create and first-reply seconds: median and max), and a ``timeline`` of every call
(tenant, kind, start and seconds, from the burst's start) that ``plot_load.py`` draws.

    .venv/bin/python benchmarks/load.py --sizes 16 32 64 --messages 3 --out benchmarks/results/load.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
import uuid
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
from tests.e2e.test_walking_skeleton import upload_body  # noqa: E402
from tests.support.daemon import AshdProcess  # noqa: E402

AGENT = REPO / "examples" / "hello-agent"
SECRET = "load-benchmark-internal-secret"
TIMEOUT_S = 300.0  # any one HTTP call: ash_sdk.AshClient's default timeout
# A message's stream: AshClient reads SSE with no read timeout (httpx.Timeout(300, read=None));
# bounded here by the run's deadline so the run still stops by itself.
STREAM_TIMEOUT = httpx.Timeout(TIMEOUT_S, read=1800.0)
PROBE_PAUSE_S = 2.0  # between the other tenant's probes
DEADLINE_S = 1800.0  # one N, start to end
# Each workspace image's quota: the default 2 GiB would make disk admission (507) refuse a
# 64-session burst on this machine's free disk, which is not what this benchmark measures.
DISK_MB = 256


class Sampler:
    """Polls /health and the daemon's process tree memory until stopped (a thread)."""

    def __init__(self, daemon: AshdProcess) -> None:
        self._daemon = daemon
        self._stop = threading.Event()
        self.health_checks = 0
        self.health_failures = 0
        self.peak_rss_mb = 0.0
        self.loadavg: list[float] = []  # 1-minute load average, one sample a second
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        assert self._daemon.proc is not None
        root = psutil.Process(self._daemon.proc.pid)
        while not self._stop.wait(0.5):
            self.health_checks += 1
            try:
                if httpx.get(f"{self._daemon.url}/health", timeout=5).status_code != 200:
                    self.health_failures += 1
            except httpx.HTTPError:
                self.health_failures += 1
            rss = 0
            for proc in [root, *root.children(recursive=True)]:
                try:
                    rss += proc.memory_info().rss
                except psutil.Error:
                    continue
            self.peak_rss_mb = max(self.peak_rss_mb, rss / 2**20)
            self.loadavg.append(os.getloadavg()[0])


class Timeline:
    """Every timed call of one run: (tenant, kind, start, seconds, ok), start from ``t0``."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def add(self, tenant: str, kind: str, began: float, took: float, ok: bool) -> None:
        with self._lock:
            self.rows.append({"tenant": tenant, "kind": kind, "at_s": round(began - self.t0, 2),
                              "s": round(took, 2), "ok": ok})


def create(client: httpx.Client, timeline: Timeline, tenant: str = "burst") -> tuple[str | None, float]:
    """(the new session's id or None, seconds); a failure is printed (stderr)."""
    began = time.perf_counter()
    sid = None
    try:
        resp = client.post("/api/sessions", json={"agent": "hello"})
        if resp.status_code == 201:
            sid = resp.json()["session"]["id"]
        else:
            print(f"create failed: {resp.status_code} {resp.text[:300]}", file=sys.stderr)
    except httpx.HTTPError as exc:
        print(f"create failed: {exc!r}", file=sys.stderr)
    took = time.perf_counter() - began
    timeline.add(tenant, "create", began, took, sid is not None)
    return sid, took


def send(client: httpx.Client, sid: str, token: str, timeline: Timeline, tenant: str = "burst") -> tuple[bool, float]:
    """One message asking for ``token``: (its reply carried it, seconds to the end of the stream)."""
    began = time.perf_counter()
    try:
        with client.stream("POST", f"/api/sessions/{sid}/messages", json={"content": f"[[say: {token}]]"},
                           timeout=STREAM_TIMEOUT) as resp:
            body = resp.read().decode(errors="replace")
            ok = resp.status_code == 200 and token in body and "event: done" in body
    except httpx.HTTPError:
        ok = False
    took = time.perf_counter() - began
    timeline.add(tenant, "message", began, took, ok)
    return ok, took


def stored_once(client: httpx.Client, sid: str, tokens: list[str]) -> int:
    """How many of ``tokens`` are stored exactly once among the session's assistant messages."""
    messages = client.get(f"/api/sessions/{sid}/messages").json()["messages"]
    replies = [m["content"] for m in messages if m["type"] == "assistant"]
    return sum(1 for t in tokens if sum(t in r for r in replies) == 1)


def converse(client: httpx.Client, sid: str, m: int, timeline: Timeline) -> tuple[list[str], list[tuple[bool, float]]]:
    tokens = [f"tok-{uuid.uuid4().hex[:12]}" for _ in range(m)]
    return tokens, [send(client, sid, t, timeline) for t in tokens]


def other_tenant(daemon: AshdProcess) -> httpx.Client:
    key = httpx.post(f"{daemon.url}/api/internal/api-keys", json={"tenantId": "other-tenant"},
                     headers={"Authorization": f"Bearer {SECRET}"}, timeout=30).json()["key"]
    client = httpx.Client(base_url=daemon.url, headers={"Authorization": f"Bearer {key}"}, timeout=TIMEOUT_S)
    client.post("/api/agents", json=upload_body("hello", AGENT)).raise_for_status()
    return client


def probes(client: httpx.Client, timeline: Timeline, stop: threading.Event) -> list[dict[str, Any]]:
    """The other tenant, until ``stop``: a new session and its first reply, timed; then it ends."""
    out: list[dict[str, Any]] = []
    while not stop.is_set():
        at = round(time.perf_counter() - timeline.t0, 2)
        sid, create_s = create(client, timeline, "other")
        row: dict[str, Any] = {"at_s": at, "create_s": round(create_s, 2), "ok": False}
        if sid is not None:
            ok, reply_s = send(client, sid, f"probe-{uuid.uuid4().hex[:8]}", timeline, "other")
            row.update(first_reply_s=round(reply_s, 2), ok=ok)
            try:
                client.delete(f"/api/sessions/{sid}")
            except httpx.HTTPError as exc:
                print(f"probe end failed: {exc!r}", file=sys.stderr)
        out.append(row)
        stop.wait(PROBE_PAUSE_S)
    return out


def spread(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "max": None}
    return {"median": round(statistics.median(values), 2), "max": round(max(values), 2)}


def run_one(model: ScriptedModel, n: int, m: int, log_level: str = "warning") -> dict[str, Any]:
    tmp = scratch("ashd-load-")
    env = {"ASH_LOG_LEVEL": log_level, "ASH_RATE_LIMIT_SESSIONS": "0", "ASH_RATE_LIMIT_GLOBAL": "0",
           "ASH_INTERNAL_SECRET": SECRET, "ASH_SANDBOX_DISK_MB": str(DISK_MB)}
    daemon = AshdProcess(tmp / "data", model.base_url, extra_env=env).start()
    try:
        # One connection per session at once: httpx's default pool (100) would make the 101st
        # session's message wait for a free connection and fail client-side after 300 s (seen at N=128).
        limits = httpx.Limits(max_connections=n + 8, max_keepalive_connections=n + 8)
        with (httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=TIMEOUT_S, limits=limits) as api,
              ThreadPoolExecutor(n + 2) as pool, Sampler(daemon) as sampler):
            api.post("/api/agents", json={"name": "hello", "path": str(AGENT)}).raise_for_status()
            other = other_tenant(daemon)
            timeline, stop = Timeline(), threading.Event()
            fairness = pool.submit(probes, other, timeline, stop)
            began = time.perf_counter()
            created = list(pool.map(lambda _: create(api, timeline), range(n), timeout=DEADLINE_S))
            create_wall = time.perf_counter() - began
            sids = [sid for sid, _ in created if sid is not None]
            began = time.perf_counter()
            talks = [pool.submit(converse, api, sid, m, timeline) for sid in sids]
            results = [t.result(timeout=DEADLINE_S) for t in talks]
            msgs_wall = time.perf_counter() - began
            stop.set()
            latencies = [s for _, sent in results for _, s in sent]
            ok = sum(1 for _, sent in results for good, _ in sent if good)
            kept = sum(stored_once(api, sid, tokens) for sid, (tokens, _) in zip(sids, results, strict=True))
            probed = fairness.result(timeout=DEADLINE_S)
            other.close()
        return {
            "n": n, "m": m,
            "creates_ok": len(sids), "create_wall_s": round(create_wall, 1),
            "create_median_s": round(statistics.median(s for _, s in created), 1),
            "create_max_s": round(max(s for _, s in created), 1),
            "messages_ok": ok, "messages": n * m,
            "msgs_per_s": round(ok / msgs_wall, 1) if msgs_wall else 0.0,
            "p50_s": round(statistics.median(latencies), 2) if latencies else None,
            "p99_s": round(percentile(latencies, 0.99), 2) if latencies else None,
            "lost": len(sids) * m - kept,
            "health_checks": sampler.health_checks, "health_failures": sampler.health_failures,
            "peak_rss_mb": round(sampler.peak_rss_mb),
            "loadavg_1m": {"min": round(min(sampler.loadavg, default=0), 2),
                           "max": round(max(sampler.loadavg, default=0), 2)},
            "other_tenant": {"probes": len(probed), "ok": sum(1 for p in probed if p["ok"]),
                             "create_s": spread([p["create_s"] for p in probed]),
                             "first_reply_s": spread([p["first_reply_s"] for p in probed if "first_reply_s" in p]),
                             "each": probed},
            "timeline": timeline.rows,
        }
    finally:
        daemon.stop()
        print(f"N={n}: ashd's log is {daemon.log_path}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--messages", type=int, default=3)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--log-level", default="warning", help="ashd's ASH_LOG_LEVEL (info: where time goes)")
    args = parser.parse_args()
    model = ScriptedModel()
    model.start()
    try:
        rows = []
        for n in args.sizes:
            rows.append(run_one(model, n, args.messages, args.log_level))
            print({k: v for k, v in rows[-1].items() if k != "timeline"}, file=sys.stderr, flush=True)
            # Written after each N: a long run stopped early keeps what it measured.
            emit({"runs": rows, "settings": f"README defaults; ASH_RATE_LIMIT_SESSIONS=0 ASH_RATE_LIMIT_GLOBAL=0 "
                                            f"ASH_SANDBOX_DISK_MB={DISK_MB}",
                  "machine": machine()}, args.out)
    finally:
        model.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
