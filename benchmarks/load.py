"""Load: N sessions created at once, then M messages from each, all sessions at once (issue #18).

Method: for each N, a fresh ashd (SQLite, the default bwrap sandbox, the README's defaults
with the per-key rate limits lifted and 256 MiB workspace quotas, so disk admission admits
the burst) and the scripted model in this process, loopback only.
N creates are sent at once (one thread each); then every created session sends M messages
one after another, all sessions at once, each asking for a unique token; then each session's
stored messages are read back. Meanwhile a sampler polls ``/health`` (must stay 200) and the
daemon's process tree's resident memory (peak), and a second tenant creates one session and
sends one message while the first tenant's messages run (its create and first reply are
timed: the fairness probe). Every HTTP call has a timeout and each N a deadline, so the run
stops by itself.

Reported per N: creates ok, create wall time and median, messages ok, msgs/s, message
latency p50/p99, lost (a token not stored exactly once, or a reply without its token),
/health failures, peak memory, and the other tenant's create and first-reply seconds.

    .venv/bin/python benchmarks/load.py --sizes 16 32 64 --messages 3 --out benchmarks/results/load.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
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
from tests.e2e.test_walking_skeleton import upload_body  # noqa: E402
from tests.support.daemon import AshdProcess  # noqa: E402

AGENT = REPO / "examples" / "hello-agent"
SECRET = "load-benchmark-internal-secret"
TIMEOUT_S = 600.0  # any one HTTP call
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


def create(client: httpx.Client) -> tuple[str | None, float]:
    """(the new session's id or None, seconds); a failure is printed (stderr)."""
    began = time.perf_counter()
    try:
        resp = client.post("/api/sessions", json={"agent": "hello"})
    except httpx.HTTPError as exc:
        print(f"create failed: {exc!r}", file=sys.stderr)
        return None, time.perf_counter() - began
    took = time.perf_counter() - began
    if resp.status_code != 201:
        print(f"create failed: {resp.status_code} {resp.text[:300]}", file=sys.stderr)
        return None, took
    return resp.json()["session"]["id"], took


def send(client: httpx.Client, sid: str, token: str) -> tuple[bool, float]:
    """One message asking for ``token``: (its reply carried it, seconds to the end of the stream)."""
    began = time.perf_counter()
    try:
        with client.stream("POST", f"/api/sessions/{sid}/messages", json={"content": f"[[say: {token}]]"}) as resp:
            body = resp.read().decode(errors="replace")
            ok = resp.status_code == 200 and token in body and "event: done" in body
    except httpx.HTTPError:
        ok = False
    return ok, time.perf_counter() - began


def stored_once(client: httpx.Client, sid: str, tokens: list[str]) -> int:
    """How many of ``tokens`` are stored exactly once among the session's assistant messages."""
    messages = client.get(f"/api/sessions/{sid}/messages").json()["messages"]
    replies = [m["content"] for m in messages if m["type"] == "assistant"]
    return sum(1 for t in tokens if sum(t in r for r in replies) == 1)


def converse(client: httpx.Client, sid: str, m: int) -> tuple[list[str], list[tuple[bool, float]]]:
    tokens = [f"tok-{uuid.uuid4().hex[:12]}" for _ in range(m)]
    return tokens, [send(client, sid, t) for t in tokens]


def other_tenant(daemon: AshdProcess) -> httpx.Client:
    key = httpx.post(f"{daemon.url}/api/internal/api-keys", json={"tenantId": "other-tenant"},
                     headers={"Authorization": f"Bearer {SECRET}"}, timeout=30).json()["key"]
    client = httpx.Client(base_url=daemon.url, headers={"Authorization": f"Bearer {key}"}, timeout=TIMEOUT_S)
    client.post("/api/agents", json=upload_body("hello", AGENT)).raise_for_status()
    return client


def probe(client: httpx.Client) -> dict[str, float | bool]:
    """The other tenant: a new session and its first reply, timed."""
    sid, create_s = create(client)
    if sid is None:
        return {"create_s": round(create_s, 2), "ok": False}
    ok, reply_s = send(client, sid, f"probe-{uuid.uuid4().hex[:8]}")
    return {"create_s": round(create_s, 2), "first_reply_s": round(reply_s, 2), "ok": ok}


def run_one(model: ScriptedModel, n: int, m: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="ashd-load-"))
    env = {"ASH_LOG_LEVEL": "warning", "ASH_RATE_LIMIT_SESSIONS": "0", "ASH_RATE_LIMIT_GLOBAL": "0",
           "ASH_INTERNAL_SECRET": SECRET, "ASH_SANDBOX_DISK_MB": str(DISK_MB)}
    daemon = AshdProcess(tmp / "data", model.base_url, extra_env=env).start()
    try:
        with (httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=TIMEOUT_S) as api,
              ThreadPoolExecutor(n + 1) as pool, Sampler(daemon) as sampler):
            api.post("/api/agents", json={"name": "hello", "path": str(AGENT)}).raise_for_status()
            other = other_tenant(daemon)
            began = time.perf_counter()
            created = list(pool.map(lambda _: create(api), range(n), timeout=DEADLINE_S))
            create_wall = time.perf_counter() - began
            sids = [sid for sid, _ in created if sid is not None]
            began = time.perf_counter()
            talks = [pool.submit(converse, api, sid, m) for sid in sids]
            fairness = pool.submit(probe, other)
            results = [t.result(timeout=DEADLINE_S) for t in talks]
            msgs_wall = time.perf_counter() - began
            latencies = [s for _, sent in results for _, s in sent]
            ok = sum(1 for _, sent in results for good, _ in sent if good)
            kept = sum(stored_once(api, sid, tokens) for sid, (tokens, _) in zip(sids, results, strict=True))
            probe_result = fairness.result(timeout=DEADLINE_S)
            other.close()
        return {
            "n": n, "m": m,
            "creates_ok": len(sids), "create_wall_s": round(create_wall, 1),
            "create_median_s": round(statistics.median(s for _, s in created), 1),
            "messages_ok": ok, "messages": n * m,
            "msgs_per_s": round(ok / msgs_wall, 1) if msgs_wall else 0.0,
            "p50_s": round(statistics.median(latencies), 2) if latencies else None,
            "p99_s": round(percentile(latencies, 0.99), 2) if latencies else None,
            "lost": len(sids) * m - kept,
            "health_checks": sampler.health_checks, "health_failures": sampler.health_failures,
            "peak_rss_mb": round(sampler.peak_rss_mb),
            "other_tenant": probe_result,
        }
    finally:
        daemon.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--messages", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    model = ScriptedModel()
    model.start()
    try:
        rows = []
        for n in args.sizes:
            rows.append(run_one(model, n, args.messages))
            print(rows[-1], file=sys.stderr, flush=True)
    finally:
        model.stop()
    emit({"runs": rows, "settings": f"README defaults; ASH_RATE_LIMIT_SESSIONS=0 ASH_RATE_LIMIT_GLOBAL=0 "
                                    f"ASH_SANDBOX_DISK_MB={DISK_MB}",
          "machine": machine()}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
