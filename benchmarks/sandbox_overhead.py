"""What isolation costs: sandbox start time and the model proxy's added latency per request.

1. Start: a real ashd per launcher (``direct``: ASH_SANDBOX_ISOLATION=none, ASH_SANDBOX_FLOOR=none;
   ``bwrap``: the default isolating launcher), timed from ``POST /api/sessions`` to its 201,
   which returns once the bridge wrote its ready byte, i.e. the CLI was spawned (inside the
   sandbox for ``bwrap``) and finished the SDK's initialize handshake. Sessions are created
   alternately on the two daemons; each is ended right after. Also timed: the CLI wrapper
   alone (setup of uid/image/cgroups/netns excluded), as ``cliwrap + bwrap + /bin/true``.
2. Proxy: ``POST /v1/messages`` (non-streaming ``[[say: ok]]``) to the scripted model directly
   and through the model proxy (token check, header rewrite, streaming relay, metering), one
   new connection per request, alternating. Reported: median/p90/p99/mean and the difference.

    .venv/bin/python benchmarks/sandbox_overhead.py --sessions 15 --requests 200 \\
        --out benchmarks/results/sandbox_overhead.json
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ashd.proxy.loop import ProxyLoop  # noqa: E402
from ashd.proxy.model import ModelProxy  # noqa: E402
from ashd.scripted.server import ScriptedModel  # noqa: E402
from benchmarks.message_latency import machine, summary  # noqa: E402
from tests.conftest import HELLO_AGENT  # noqa: E402
from tests.support.daemon import AshdProcess  # noqa: E402


def session_starts(model: ScriptedModel, base: Path, n: int) -> dict[str, list[float]]:
    with contextlib.ExitStack() as stack:  # every daemon started is stopped, also when a later start fails
        daemons = {
            "direct": stack.enter_context(AshdProcess(base / "direct", model.base_url, None, {
                "ASH_SANDBOX_ISOLATION": "none", "ASH_SANDBOX_FLOOR": "none"}).start()),
            "bwrap": stack.enter_context(AshdProcess(base / "bwrap", model.base_url, None, {
                "ASH_SANDBOX_MOUNT_ROOT": "/run/ashd-bench"}).start()),
        }
        out: dict[str, list[float]] = {name: [] for name in daemons}
        clients = {name: stack.enter_context(httpx.Client(base_url=d.url, headers=d.headers, timeout=120))
                   for name, d in daemons.items()}
        for c in clients.values():
            c.post("/api/agents", json={"name": "hello", "path": str(HELLO_AGENT)}).raise_for_status()
        for i in range(n + 1):
            for name, c in clients.items():
                start = time.perf_counter()
                resp = c.post("/api/sessions", json={"agent": "hello"})
                took = (time.perf_counter() - start) * 1000
                assert resp.status_code == 201, resp.text
                c.delete(f"/api/sessions/{resp.json()['session']['id']}")
                if i:  # the first round warms caches
                    out[name].append(took)
    return out


def _post(port: int, key: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", "/v1/messages", body=json.dumps({
        "model": "claude-sonnet-4-5", "max_tokens": 10, "stream": False,
        "messages": [{"role": "user", "content": "[[say: ok]]"}]}), headers={"x-api-key": key})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    assert resp.status == 200, resp.status


def proxy_latency(model: ScriptedModel, n: int) -> dict[str, list[float]]:
    loop = ProxyLoop()
    proxy = ModelProxy(loop, model.base_url, "sk-bench", "", lambda gate, usage: None)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.setblocking(False)
    port = sock.getsockname()[1]
    token = proxy.register("bench", sock, {"session_id": "s", "tenant_id": "t", "agent_name": "a",
                                           "budget_usd": None})
    direct_port = int(model.base_url.rsplit(":", 1)[1])
    out: dict[str, list[float]] = {"direct": [], "proxy": []}
    try:
        for i in range(n + 10):
            for name, target, key in (("direct", direct_port, "sk-bench"), ("proxy", port, token)):
                start = time.perf_counter()
                _post(target, key)
                if i >= 10:
                    out[name].append((time.perf_counter() - start) * 1000)
    finally:
        proxy.unregister("bench")
        loop.stop()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=15)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with ScriptedModel() as model, tempfile.TemporaryDirectory() as tmp:
        starts = session_starts(model, Path(tmp), args.sessions)
        proxied = proxy_latency(model, args.requests)
    start_stats = {k: summary(v) for k, v in starts.items()}
    proxy_stats = {k: summary(v) for k, v in proxied.items()}
    report: dict[str, Any] = {
        "session_start": start_stats,
        "sandbox_added_ms": {k: round(start_stats["bwrap"][k] - start_stats["direct"][k], 2)
                             for k in ("median_ms", "p90_ms", "mean_ms")},
        "model_request": proxy_stats,
        "proxy_added_ms": {k: round(proxy_stats["proxy"][k] - proxy_stats["direct"][k], 2)
                           for k in ("median_ms", "p90_ms", "p99_ms", "mean_ms")},
        "machine": machine(),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
