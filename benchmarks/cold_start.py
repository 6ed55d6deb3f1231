"""Cold session create, wake of a parked session, and memory per live session, beside the SDK itself.

Issues #12 (cold create <= a direct ``ClaudeSDKClient.connect()`` + 150 ms; ashd + bridge
memory per live session <= 30 MB) and #17 (wake of a parked session: first event <= 700 ms).

Method: the scripted model in this process; two ashd daemons (SQLite, the default bwrap
sandbox, ``ASH_PARK_AFTER_MS=1000``): ``base``, a baseline checkout (``--baseline-repo``, e.g. a
``git worktree`` of main; without it there is no ``base``) run on a throwaway virtualenv that
imports ashd from that checkout in every process (``message_latency.interpreter_for``: ashd
starts its zygote and bridges with ``python -P``, which imports ashd from the interpreter's
install, so this checkout's interpreter would run this checkout's bridges for the baseline too;
a ``--baseline-python`` given instead is checked for that), and ``new``, this checkout. Each
round, in turn:

- ``direct``: in this process (the SDK already imported), ``ClaudeSDKClient.connect()`` of a
  new client configured as the bridge configures it (the CLI bundled with the SDK, no
  sandbox), then a first turn (first event), then ``disconnect()``;
- for ``base`` and ``new`` (which goes first alternates): ``POST /api/sessions`` with a session-specific model (no
  pre-warm applies), timed as the API call (``create``) and to the first model event of a
  following message (``create_first_event``); then wait until the session is parked (its
  CLI and bridge exited) and send a message again (``wake_first_event``, ``wake_done``);
  then delete the session.

First, without ashd and without a sandbox (everything in the root CPU cgroup, like the direct
client, so CPU contention from other work on the machine weighs on all three alike): a bridge
spawned as a plain ``python -m ashd.bridge`` and one forked by the zygote, each timed from
spawn to its ready byte (it connected its CLI), interleaved with a direct connect.

Per-step figures of ``new`` come from its own logs: the launcher's set-up (uid, image,
cgroups, netns, proxies, transcript) and the bridge's spawn, the bridge's age when it started
the CLI (Python start and imports; ~0 for a zygote fork) and the SDK connect inside the
sandbox (cliwrap, setpriv, bwrap, the CLI's start and initialize handshake).

Memory: after the rounds, on a fresh daemon of each kind without short parking, ``--live``
sessions are created, each sent one message, and left idle; the
figure per live session is (ashd's PSS growth + the bridges' PSS + the zygote's PSS) / live.
The CLI and bwrap (inside the sandbox, ~140 MiB) are not counted: issue #12 is about ashd's
own processes. Load average is recorded at start and end (the machine is shared).

    git worktree add --detach /tmp/base main
    .venv/bin/python benchmarks/cold_start.py --rounds 8 --baseline-repo /tmp/base \\
        --out benchmarks/results/cold_start.json
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ashd.sandbox.launcher import DirectLauncher  # noqa: E402
from ashd.sandbox.zygote import BridgeZygote  # noqa: E402
from ashd.scripted.server import ScriptedModel  # noqa: E402
from benchmarks.message_latency import Direct, emit, interpreter_for, machine, summary  # noqa: E402
from benchmarks.scratch import scratch  # noqa: E402
from tests.bridge.test_bridge_process import make_spec, wait_ready  # noqa: E402
from tests.support.daemon import AshdProcess, is_bridge  # noqa: E402

AGENT = str(REPO / "examples" / "hello-agent")
MIB = 1 << 20
PARK_AFTER_MS = 1000
SETUP = re.compile(r"sandbox (\S+): set up in ([\d.]+) ms .*bridge \d+ spawned in ([\d.]+) ms")
CONNECTED = re.compile(r"CLI connected in (\d+) ms \(asked for (-?\d+) ms after this process started\)")
METHOD = ("benchmarks/cold_start.py: interleaved rounds of a direct ClaudeSDKClient.connect() (SDK imported, no "
          "sandbox), a baseline ashd (another checkout) and this ashd (cold create, then wake after park); bridge "
          "starts without ashd or sandbox (plain, zygote fork, direct connect); scripted model; see the docstring")
READY = re.compile(r"sandbox (\S+) ready for session \S+ in (\d+) ms")


def first_event(c: httpx.Client, sid: str, content: str, since: float) -> tuple[float, float]:
    """(first model event, done) in ms after ``since``."""
    first = 0.0
    with c.stream("POST", f"/api/sessions/{sid}/messages", json={"content": content}) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not first and line.startswith("event:") and "session_start" not in line:
                first = time.perf_counter()
    return (first - since) * 1000, (time.perf_counter() - since) * 1000


def wait_parked(c: httpx.Client, sid: str) -> None:
    deadline = time.monotonic() + 120
    while c.get(f"/api/sessions/{sid}").json()["session"].get("runtime") != "parked":
        if time.monotonic() > deadline:
            raise RuntimeError(f"session {sid} was not parked")
        time.sleep(0.05)


def ashd_round(c: httpx.Client, out: dict[str, list[float]]) -> str:
    """One create and wake; returns the session's log (its bridge reports its own steps there)."""
    began = time.perf_counter()
    resp = c.post("/api/sessions", json={"agent": "cold", "model": "claude-x"})
    out["create"].append((time.perf_counter() - began) * 1000)
    resp.raise_for_status()
    sid = resp.json()["session"]["id"]
    out["create_first_event"].append(first_event(c, sid, "[[say: ok]]", began)[0])
    wait_parked(c, sid)
    first, done = first_event(c, sid, "[[say: awake]]", time.perf_counter())
    out["wake_first_event"].append(first)
    out["wake_done"].append(done)
    logs = c.get(f"/api/sessions/{sid}/logs", params={"limit": 1000}).text
    c.delete(f"/api/sessions/{sid}").raise_for_status()
    return logs


async def direct_round(model: ScriptedModel, root: Path, out: dict[str, list[float]]) -> None:
    direct = Direct(model.base_url, root)
    began = time.perf_counter()
    await direct.client.connect()
    out["connect"].append((time.perf_counter() - began) * 1000)
    first, _ = await direct.turn()
    out["connect_first_event"].append(out["connect"][-1] + first)
    await direct.client.disconnect()


def bridge_starts(model: ScriptedModel, root: Path, rounds: int) -> dict[str, list[float]]:
    """Without ashd and without the sandbox (all in this machine's root CPU cgroup, like the
    direct client): a bridge started as a plain process and forked by the zygote, spawn to
    ready byte, interleaved with a direct connect. Isolates what the start path of the bridge
    itself costs over the SDK's connect."""
    zygote = BridgeZygote().start()
    out: dict[str, list[float]] = {"direct_connect": [], "plain_bridge": [], "zygote_bridge": []}
    try:
        for i in range(rounds + 1):
            sink: dict[str, list[float]] = out if i else {k: [] for k in out}
            asyncio.run(direct_round(model, root / f"d{i}", {"connect": sink["direct_connect"],
                                                            "connect_first_event": []}))
            for name, launcher in (("plain_bridge", DirectLauncher()), ("zygote_bridge", DirectLauncher(zygote))):
                spec = make_spec(root / f"{name}-{i}", model.base_url)
                began = time.perf_counter()
                proc = launcher.spawn(spec)
                ready = wait_ready(proc, 300)
                sink[name].append((time.perf_counter() - began) * 1000)
                assert ready == b"R", spec.log_path
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                for stream in (proc.stdout, proc.stderr):
                    if stream is not None:
                        stream.close()
    finally:
        zygote.close()
    return out


def pss(pid: int) -> int:
    try:
        return int(psutil.Process(pid).memory_full_info().pss)
    except psutil.Error:
        return 0


def ashd_processes(daemon: AshdProcess) -> dict[str, list[int]]:
    """ashd's bridges and its zygote (its processes outside the sandboxes, besides itself)."""
    found: dict[str, list[int]] = {"bridges": [], "zygote": []}
    for proc in daemon.descendants():
        try:
            cmd = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        if "ashd.bridge.zygote" in cmd:
            found["zygote"].append(proc.pid)
        elif is_bridge(cmd):
            found["bridges"].append(proc.pid)
    return found


def memory(daemon: AshdProcess, c: httpx.Client, live: int) -> dict[str, Any]:
    assert daemon.proc is not None
    before = pss(daemon.proc.pid)
    sids = [c.post("/api/sessions", json={"agent": "cold", "model": "claude-x"}).json()["session"]["id"]
            for _ in range(live)]
    for sid in sids:
        first_event(c, sid, "[[say: ok]]", time.perf_counter())
    time.sleep(1)
    ashd_growth = pss(daemon.proc.pid) - before
    procs = ashd_processes(daemon)
    bridges = [pss(pid) for pid in procs["bridges"]]
    zygote = sum(pss(pid) for pid in procs["zygote"])
    for sid in sids:
        c.delete(f"/api/sessions/{sid}")
    per_session = (ashd_growth + sum(bridges) + zygote) / live
    return {"live_sessions": live, "bridges_seen": len(bridges),
            "bridge_pss_mib_mean": round(statistics.fmean(bridges) / MIB, 1) if bridges else None,
            "zygote_pss_mib": round(zygote / MIB, 1), "ashd_pss_growth_mib": round(ashd_growth / MIB, 1),
            "ashd_and_bridge_mib_per_live_session": round(per_session / MIB, 1)}


def steps(daemon: AshdProcess, session_logs: list[str]) -> dict[str, Any]:
    """Per-step medians from the daemon's log and its sessions' logs (``new`` only)."""
    text = daemon.log(tail=None)
    setup = [float(m.group(2)) for m in SETUP.finditer(text)]
    spawn = [float(m.group(3)) for m in SETUP.finditer(text)]
    ready = [float(m.group(2)) for m in READY.finditer(text)]
    age, connect = [], []
    for log in session_logs:
        for m in CONNECTED.finditer(log):
            connect.append(float(m.group(1)))
            age.append(float(m.group(2)))
    med = lambda xs: round(statistics.median(xs), 1) if xs else None  # noqa: E731
    return {"n_starts": len(ready), "sandbox_setup_ms": med(setup), "bridge_spawn_ms": med(spawn),
            "bridge_age_at_cli_start_ms": med(age), "sdk_connect_in_sandbox_ms": med(connect),
            "spawn_to_ready_ms": med(ready)}


def start_daemon(model: ScriptedModel, root: Path, python: str, repo: Path, park: bool = True) -> AshdProcess:
    """``park``: idle sessions parked after PARK_AFTER_MS (else the default, minutes: the memory figure)."""
    env = {"ASH_LOG_LEVEL": "debug", **({"ASH_PARK_AFTER_MS": str(PARK_AFTER_MS)} if park else {})}
    root.mkdir(parents=True)
    return AshdProcess(root / "data", model.base_url, extra_env=env, python=python, repo=repo).start()


def check_imports_from(python: str, repo: Path) -> None:
    """Exit unless ``python -P`` (how ashd starts its zygote and bridges) imports ashd from ``repo``."""
    found = subprocess.run([python, "-P", "-c", "import ashd; print(ashd.__file__)"], capture_output=True,
                           text=True, check=True).stdout.strip()
    if not Path(found).resolve().is_relative_to(repo.resolve()):
        raise SystemExit(f"{python} -P imports ashd from {found}, not from {repo}: the baseline's bridges would "
                         "not be the baseline's; omit --baseline-python")


def run(rounds: int, live: int, baseline_python: str | None, baseline_repo: Path | None) -> dict[str, Any]:
    """``baseline_repo`` None: no ``base`` daemon (this checkout only). ``baseline_python`` None:
    a throwaway virtualenv importing ashd from ``baseline_repo``."""
    load_start = os.getloadavg()
    model = ScriptedModel()
    model.start()
    tmp = scratch("ashd-bench-")
    bridges = bridge_starts(model, tmp / "bridges", rounds)
    kinds: dict[str, tuple[str, Path]] = {"new": (sys.executable, REPO)}
    if baseline_repo is not None:
        python = baseline_python or interpreter_for(baseline_repo, tmp)
        check_imports_from(python, baseline_repo)
        kinds = {"base": (python, baseline_repo), **kinds}
    daemons: dict[str, AshdProcess] = {}
    figures: dict[str, dict[str, list[float]]] = {
        "direct": {"connect": [], "connect_first_event": []},
        **{name: {"create": [], "create_first_event": [], "wake_first_event": [], "wake_done": []}
           for name in kinds}}
    mem: dict[str, Any] = {}
    session_logs: list[str] = []
    try:
        for name, (python, repo) in kinds.items():  # inside the try: a failed start stops those before it
            daemons[name] = start_daemon(model, tmp / name, python, repo)
        clients = {name: httpx.Client(base_url=d.url, headers=d.headers, timeout=180) for name, d in daemons.items()}
        for c in clients.values():
            c.post("/api/agents", json={"name": "cold", "path": AGENT}).raise_for_status()
        for i in range(rounds + 1):  # round 0 warms caches and is not counted
            sink = figures if i else {k: {f: [] for f in v} for k, v in figures.items()}
            asyncio.run(direct_round(model, tmp / f"direct-{i}", sink["direct"]))
            # Alternate which daemon goes first: the one after the other starts while the
            # other's deleted sandbox is still being torn down.
            for name, c in sorted(clients.items(), reverse=bool(i % 2)):
                logs = ashd_round(c, sink[name])
                if name == "new":
                    session_logs.append(logs)
        per_step = steps(daemons["new"], session_logs)
        for c in clients.values():
            c.close()
        for d in daemons.values():
            d.stop()
        for name, (python, repo) in kinds.items() if live else ():
            daemons[name] = start_daemon(model, tmp / f"{name}-memory", python, repo, park=False)
            with httpx.Client(base_url=daemons[name].url, headers=daemons[name].headers, timeout=180) as c:
                c.post("/api/agents", json={"name": "cold", "path": AGENT}).raise_for_status()
                mem[name] = memory(daemons[name], c, live)
            daemons[name].stop()
    finally:
        for d in daemons.values():
            d.stop()
        model.stop()
    stats = {who: {k: summary(v) for k, v in fig.items()} for who, fig in figures.items()}
    connect = stats["direct"]["connect"]["median_ms"]
    return {
        "method": METHOD,
        "rounds": rounds,
        "park_after_ms": PARK_AFTER_MS,
        "stats": stats,
        "bridge_start_no_sandbox": {k: summary(v) for k, v in bridges.items()},
        "create_minus_direct_connect_median_ms": {
            name: round(stats[name]["create"]["median_ms"] - connect, 1) for name in daemons},
        # Per round (the two creates of a round ran back to back): less spread than the medians' difference.
        "create_new_minus_base_paired_median_ms": round(statistics.median(
            n - b for n, b in zip(figures["new"]["create"], figures["base"]["create"], strict=True)), 1)
        if "base" in figures else None,
        "new_steps_median": per_step,
        "memory": mem,
        "targets": {"create_minus_connect_ms": 150, "wake_first_event_median_ms": 700,
                    "ashd_and_bridge_mib_per_live_session": 30},
        "baseline": str(baseline_repo) if baseline_repo is not None else None,
        "loadavg_at_start": [round(x, 2) for x in load_start],
        "machine": machine(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--live", type=int, default=4, help="live sessions for the memory figure (0: none)")
    parser.add_argument("--bridges-only", action="store_true", help="only the bridge starts without ashd")
    parser.add_argument("--baseline-repo", type=Path, help="another checkout to run beside this one")
    parser.add_argument("--baseline-python", help="its interpreter (default: a throwaway virtualenv importing "
                                                   "ashd from --baseline-repo)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.baseline_python is not None and args.baseline_repo is None:
        parser.error("--baseline-python needs --baseline-repo")
    if args.bridges_only:
        with ScriptedModel() as model, tempfile.TemporaryDirectory() as tmp:
            starts = bridge_starts(model, Path(tmp), args.rounds)
        load = [round(x, 2) for x in os.getloadavg()]
        emit({"method": METHOD, "rounds": args.rounds,
              "bridge_start_no_sandbox": {k: summary(v) for k, v in starts.items()},
              "machine": machine(), "loadavg_at_end": load}, args.out)
        return 0
    emit(run(args.rounds, args.live, args.baseline_python, args.baseline_repo), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
