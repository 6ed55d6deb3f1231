"""Where a wake's time goes (issue #17), hop by hop, beside a direct SDK resume in the same run.

Method: the scripted model in this process; one ashd (SQLite, the default bwrap sandbox,
``ASH_PARK_AFTER_MS=1000``, debug logs) with one session, and a ``direct`` client: the SDK in
this process configured as the bridge configures it (the CLI bundled with the SDK, no
sandbox), whose own conversation got the same first message. Each round, interleaved:

- ``direct``: a new ``ClaudeSDKClient`` that resumes its transcript: ``connect()``, then a
  message, timed to its first text delta (``direct_connect``, ``direct_first_delta``,
  both from before ``connect()``), then ``disconnect()``;
- ``ashd``: wait until the session is parked, then ``POST .../messages`` with partial
  messages, timed to its first event and first text delta.

ashd's hops come from its logs, on the same clock as the client's wall-clock stamps:
``admission`` (POST to the start of the sandbox set-up: HTTP, session actor, start gate,
pool), ``setup`` (uid, image mount, cgroups, netns, proxies, transcript), ``spawn`` (the
zygote's fork of the bridge), ``bridge_to_cli`` (the bridge's age when its SDK spawned the
CLI), ``cli_connect`` (the CLI wrapper, setpriv, bwrap, the CLI's start and the SDK's
initialize handshake, inside the sandbox: the direct client's ``connect()`` counterpart),
``ready_to_first_delta`` (ashd connects to the bridge, sends the query; the resumed CLI's
first model request; the first delta back through the bridge, ashd's commit and SSE).
The difference ashd - direct is what ashd adds; the load average is recorded.

    git archive 3bbeebf | tar -x -C /tmp/base   # the code before this change, for --baseline-repo
    .venv/bin/python benchmarks/wake_breakdown.py --rounds 10 --baseline-repo /tmp/base \\
        [--out benchmarks/results/wake_breakdown.json]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from claude_agent_sdk import ClaudeSDKClient  # noqa: E402

from ashd.bridge.driver import build_options  # noqa: E402
from ashd.sandbox.env import sandbox_env  # noqa: E402
from ashd.scripted.server import ScriptedModel  # noqa: E402
from ashd.wire.settings import BridgeSettings  # noqa: E402
from benchmarks.cold_start import wait_parked  # noqa: E402
from benchmarks.message_latency import emit, machine, summary  # noqa: E402
from benchmarks.scratch import scratch  # noqa: E402
from tests.support.daemon import AshdProcess  # noqa: E402

AGENT = str(REPO / "examples" / "hello-agent")
PARK_AFTER_MS = 1000
FIRST = "[[say: remember the word alpha]]"
DIRECT_SESSION = "5f0c2a57-1d7e-4c36-9b8e-3c1b2d4e5f60"
WAKE = "[[say: the quick brown fox jumps over the lazy dog]]"
STAMP = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})"
SETUP = re.compile(STAMP + r" .*sandbox (\S+): set up in ([\d.]+) ms .*bridge \d+ spawned in ([\d.]+) ms")
READY = re.compile(STAMP + r" .*sandbox \S+ ready for session \S+ in (\d+) ms")
CONNECTED = re.compile(r"CLI connected in (\d+) ms \(asked for (-?\d+) ms after this process started\)")


def bundled_cli() -> Path:
    import claude_agent_sdk

    return Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude"


def sandbox_like_cgroup(tmp: Path) -> tuple[Path | None, str | None]:
    """A CPU cgroup beside ashd's daemons' sandbox cgroups (cgroup v1 ``ashd-sandboxes/<x>``,
    ``cpu.shares`` 1024, like a daemon's level), and a ``cli_path`` that starts the bundled CLI
    in it: the direct client's CLI then competes for the CPU from where a sandboxed CLI does
    (on a busy host every sandbox of every daemon shares the ``ashd-sandboxes`` group).
    (None, None) where that cgroup cannot be made (cgroup v2, no root)."""
    group = Path("/sys/fs/cgroup/cpu/ashd-sandboxes") / f"bench-direct-{os.getpid()}"
    try:
        group.mkdir(exist_ok=True)
        (group / "cpu.shares").write_text("1024")
    except OSError:
        return None, None
    wrapper = tmp / "cli-in-cgroup"
    wrapper.write_text(f"#!/bin/sh\necho $$ > {group / 'cgroup.procs'}\nexec {bundled_cli()} \"$@\"\n")
    wrapper.chmod(0o700)
    return group, str(wrapper)


def direct_client(model_url: str, root: Path, cli_path: str | None = None) -> ClaudeSDKClient:
    """The SDK client as the bridge configures it, for the direct conversation under ``root``
    (the same session id each time: a client made after the first resumes its transcript)."""
    workspace = root / "workspace"
    workspace.mkdir(parents=True, exist_ok=True)
    env = sandbox_env(home=str(root / "home"), model_base_url=model_url, model_key="k",
                      model_auth_token="", user_env={})
    os.environ.update(env)  # the SDK passes os.environ to the CLI, as in the bridge
    settings = BridgeSettings(session_id=DIRECT_SESSION, socket_path="unused",
                              workspace=str(workspace), system_prompt="benchmark agent", cli_path=cli_path)
    return ClaudeSDKClient(build_options(settings))


async def turn(client: ClaudeSDKClient, prompt: str) -> float:
    """Send ``prompt``; ms to its first text delta (the whole turn is read)."""
    began, first = time.perf_counter(), 0.0
    await client.query(prompt)
    async for raw in client._query.receive_messages():  # type: ignore[union-attr]
        if not first and raw.get("type") == "stream_event" and "text_delta" in json.dumps(raw):
            first = time.perf_counter()
        if raw.get("type") == "result":
            break
    return (first - began) * 1000


def log_time(stamp: str) -> float:
    """A log line's wall-clock time (the daemon logs local time, like this process)."""
    return dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def ashd_wake(c: httpx.Client, sid: str) -> dict[str, float]:
    """POST a message to the parked session: wall-clock stamps of the POST, first event, first delta."""
    out = {"post": time.time(), "first_event": 0.0, "first_delta": 0.0}
    with c.stream("POST", f"/api/sessions/{sid}/messages",
                  json={"content": WAKE, "includePartialMessages": True}) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if line.startswith("event:") and "session_start" not in line:
                out["first_event"] = out["first_event"] or time.time()
                if "text_delta" in line:
                    out["first_delta"] = out["first_delta"] or time.time()
        out["done"] = time.time()
    return out


async def direct_resume(model_url: str, root: Path, cli_path: str | None = None) -> tuple[float, float]:
    """A new client resuming the direct conversation: (connect, first delta) ms from before connect()."""
    client = direct_client(model_url, root, cli_path)
    began = time.perf_counter()
    await client.connect()
    connected = (time.perf_counter() - began) * 1000
    first = await turn(client, WAKE)
    await client.disconnect()
    return connected, connected + first


def hops(stamps: list[dict[str, float]], daemon_log: str, session_log: str) -> dict[str, list[float]]:
    """Per wake, each hop in ms (see the module docstring)."""
    setups = [(log_time(m.group(1)), float(m.group(3)), float(m.group(4))) for m in SETUP.finditer(daemon_log)]
    readies = [log_time(m.group(1)) for m in READY.finditer(daemon_log)]
    connects = [(float(m.group(1)), float(m.group(2))) for m in CONNECTED.finditer(session_log)]
    out: dict[str, list[float]] = {k: [] for k in (
        "admission", "setup", "spawn", "bridge_to_cli", "cli_connect", "ready_to_first_event",
        "ready_to_first_delta", "first_event", "first_delta")}
    # The first start is the create's; each wake is one later start, in order.
    for wake, (logged, setup, spawn), ready, (connect, age) in zip(
            stamps, setups[-len(stamps):], readies[-len(stamps):], connects[-len(stamps):], strict=True):
        began_setup = logged - (setup + spawn) / 1000
        out["admission"].append((began_setup - wake["post"]) * 1000)
        out["setup"].append(setup)
        out["spawn"].append(spawn)
        out["bridge_to_cli"].append(age)
        out["cli_connect"].append(connect)
        out["ready_to_first_event"].append((wake["first_event"] - ready) * 1000)
        out["ready_to_first_delta"].append((wake["first_delta"] - ready) * 1000)
        out["first_event"].append((wake["first_event"] - wake["post"]) * 1000)
        out["first_delta"].append((wake["first_delta"] - wake["post"]) * 1000)
    return out


class Daemon:
    """One ashd with one session whose wakes are timed."""

    def __init__(self, name: str, model: ScriptedModel, root: Path, repo: Path) -> None:
        env = {"ASH_LOG_LEVEL": "debug", "ASH_PARK_AFTER_MS": str(PARK_AFTER_MS)}
        self.name = name
        root.mkdir(parents=True)
        self.proc = AshdProcess(root / "data", model.base_url, extra_env=env, repo=repo).start()
        self.client = httpx.Client(base_url=self.proc.url, headers=self.proc.headers, timeout=180)
        self.client.post("/api/agents", json={"name": "hello", "path": AGENT}).raise_for_status()
        self.sid = self.client.post("/api/sessions", json={"agent": "hello"}).json()["session"]["id"]
        self.client.post(f"/api/sessions/{self.sid}/messages", json={"content": FIRST}).raise_for_status()
        self.stamps: list[dict[str, float]] = []

    def wake(self) -> None:
        wait_parked(self.client, self.sid)
        self.stamps.append(ashd_wake(self.client, self.sid))

    def hops(self) -> dict[str, list[float]]:
        logs = self.client.get(f"/api/sessions/{self.sid}/logs", params={"limit": 1000}).json()["logs"]
        per_hop = hops(self.stamps, self.proc.log(tail=None), "\n".join(e["text"] for e in logs))
        return {k: v[1:] for k, v in per_hop.items()}  # round 0 warms caches

    def stop(self) -> None:
        self.client.close()
        self.proc.stop()


def run(rounds: int, baseline: Path | None) -> dict[str, Any]:
    load_start = os.getloadavg()
    model = ScriptedModel()
    model.start()
    tmp = scratch("ashd-bench-")
    direct: dict[str, list[float]] = {"direct_connect": [], "direct_first_delta": [],
                                      "direct_cg_connect": [], "direct_cg_first_delta": []}
    group, cg_cli = None, None
    daemons: list[Daemon] = []
    try:
        daemons.append(Daemon("ashd", model, tmp / "ashd", REPO))
        if baseline is not None:
            daemons.append(Daemon("baseline", model, tmp / "baseline", baseline))
        group, cg_cli = sandbox_like_cgroup(tmp)  # once a daemon made ashd-sandboxes
        asyncio.run(direct_first(model.base_url, tmp / "direct"))
        if cg_cli:
            asyncio.run(direct_first(model.base_url, tmp / "direct-cg"))
        for i in range(rounds + 1):  # round 0 warms caches and is not counted
            sink = direct if i else {k: [] for k in direct}
            connected, first = asyncio.run(direct_resume(model.base_url, tmp / "direct"))
            sink["direct_connect"].append(connected)
            sink["direct_first_delta"].append(first)
            if cg_cli:
                connected, first = asyncio.run(direct_resume(model.base_url, tmp / "direct-cg", cg_cli))
                sink["direct_cg_connect"].append(connected)
                sink["direct_cg_first_delta"].append(first)
            for daemon in daemons:
                daemon.wake()
        per_daemon = {d.name: d.hops() for d in daemons}
    finally:
        for daemon in daemons:
            daemon.stop()
        model.stop()
        if group is not None:
            group.rmdir()
    direct = {k: v for k, v in direct.items() if v}
    med = {k: round(statistics.median(v), 1) for k, v in direct.items()}
    report: dict[str, Any] = {
        "method": "benchmarks/wake_breakdown.py: interleaved rounds of a direct SDK resume (connect + first delta; "
                  "direct_cg: its CLI in a CPU cgroup beside the sandboxes') and an ashd wake of a parked session "
                  "(hops from ashd's logs; 'baseline': another checkout); scripted model; see the docstring",
        "rounds": rounds,
        "direct_median_ms": med,
    }
    for name, per_hop in per_daemon.items():
        hop_med = {k: round(statistics.median(v), 1) for k, v in per_hop.items()}
        report[name] = {
            "median_ms": hop_med,
            "first_delta_minus_direct_ms": round(hop_med["first_delta"] - med["direct_first_delta"], 1),
            "cli_connect_minus_direct_connect_ms": round(hop_med["cli_connect"] - med["direct_connect"], 1),
            **({"first_delta_minus_direct_cg_ms": round(hop_med["first_delta"] - med["direct_cg_first_delta"], 1),
                "cli_connect_minus_direct_cg_connect_ms": round(hop_med["cli_connect"] - med["direct_cg_connect"], 1)}
               if "direct_cg_first_delta" in med else {}),
            "stats": {k: summary(v) for k, v in per_hop.items()},
        }
    report.update({
        "direct_stats": {k: summary(v) for k, v in direct.items()},
        "goal_first_delta_median_ms": 700,
        "baseline_repo": str(baseline) if baseline else None,
        "loadavg_at_start": [round(x, 2) for x in load_start],
        "machine": machine(),
    })
    return report


async def direct_first(model_url: str, root: Path) -> None:
    """The direct client's conversation gets the first message (its transcript, to resume)."""
    client = direct_client(model_url, root)
    await client.connect()
    await turn(client, FIRST)
    await client.disconnect()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--baseline-repo", type=Path,
                        help="another ashd checkout (e.g. `git archive main`), run with this interpreter, interleaved")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    report = run(args.rounds, args.baseline_repo)
    emit(report, args.out)
    for name in ("ashd", "baseline"):
        if name in report:
            print(name, json.dumps(report[name]["median_ms"]), file=sys.stderr)
    print("direct", json.dumps(report["direct_median_ms"]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
