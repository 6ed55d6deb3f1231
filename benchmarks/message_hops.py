"""Where a warm message's added time goes, hop by hop: ashd versus ClaudeSDKClient directly.

Method: the setup of ``message_latency.py`` (one scripted model in this process, a direct
``ClaudeSDKClient`` and a real ashd with the default bwrap sandbox, rounds alternating between
the two), with ``perf record`` tracing the system calls that hand a message on (``sendto``,
``write``, ``writev``, ``pwritev2``, ``sendmsg``, entry only: time, thread, file descriptor,
size), the returns of epoll waits with ready events, and the scheduler's switches across every
process. Each round's hand-offs are then read off the trace:

ashd round: the client sends the POST -> ashd writes the query to the bridge -> the bridge
writes it to the CLI's stdin -> the CLI sends its model request -> the model proxy forwards it
-> the model answers -> the proxy relays the first bytes to the CLI -> the CLI writes its first
line after them -> the bridge sends it on -> ashd sends the first SSE frame after it -> the
client sees the first text delta.

direct round: the client writes to the CLI's stdin -> the CLI sends its model request -> the
model answers -> the CLI writes its first line after it -> the client sees the first text
delta.

Each hand-off to ashd, the bridge and the model proxy is split in two: its wake-up (the send
to the receiver's epoll wait returning: the kernel's wake-up and any wait for a core) and the
receiver's own work until it sends on. That work is split again by the scheduler's switches
into running (on a core: the process's own code and the system calls it makes), runnable
(waiting for a core) and blocked (sleeping: a lock, the GIL, I/O) -- ``*_work_running`` is
what faster code in that process could save.

Reported: the median of each segment per path, and the difference, so the added time to the
first text delta is split into the client's HTTP stack, ashd, the bridge, the CLI inside the
sandbox (versus outside it) and the model proxy, each as work and wake-ups. Needs root and ``perf`` (Debian:
``linux-perf``); the trace makes every process a little slower, so the segments, not the
totals, are the figures to read (``message_latency.py`` has the totals). ``--mirrored`` gives
the direct client an SDK session store, as the bridge has (the CLI then mirrors its transcript),
so that ``cli_in_sandbox_vs_outside`` compares the same CLI work.

    .venv/bin/python benchmarks/message_hops.py --rounds 30 --out benchmarks/results/message_hops.json
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import dataclasses
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ashd.scripted.server import ScriptedModel  # noqa: E402
from benchmarks.message_latency import Direct, MemoryStore, ashd_turn, bench_session, machine  # noqa: E402
from benchmarks.schedstat import ashd_roles  # noqa: E402
from benchmarks.scratch import scratch  # noqa: E402
from tests.support.daemon import AshdProcess  # noqa: E402

CALLS = ("sendto", "write", "writev", "pwritev2", "sendmsg")
WAITS = ("epoll_wait", "epoll_pwait", "epoll_pwait2")  # their returns: a thread woken with work
MODEL_REQUEST_BYTES = 10_000  # the CLI's request carries tools and the conversation (~45 KB)
LINE = re.compile(r"^\s*(.+?)\s+(\d+)/(\d+)\s+([\d.]+):\s+syscalls:sys_(enter|exit)_(\w+):\s+(.*)$")


@dataclass(frozen=True)
class Call:
    t: float  # seconds, CLOCK_MONOTONIC
    pid: int
    tid: int
    comm: str
    call: str  # a send's name, or "woke": an epoll wait returned with ready events
    fd: int
    size: int  # bytes (vectors for writev/pwritev2/sendmsg: 1 means one buffer)


@dataclass(frozen=True)
class Roles:
    bench: int  # this process: the client's main thread and the scripted model's thread
    ashd: int
    sse_fd: int  # ashd's socket to the client (its busiest; the other one it sends on is the bridge's)
    bridge: int
    cli: int  # the sandboxed CLI
    direct_cli: int


LINE_T = re.compile(r"^\s*.+?\s+\d+/\d+\s+([\d.]+):")
SWITCH = re.compile(r"sched:sched_switch: .*?prev_pid=(\d+) .*?prev_state=(\S+) ==> .*?next_pid=(\d+) ")


class Threads:
    """What each thread was doing when, from the scheduler's switches: running (on a core),
    runnable (preempted or woken, waiting for a core) or blocked (sleeping: I/O, a lock)."""

    def __init__(self, text: str, tids: set[int]) -> None:
        self._states: dict[int, list[tuple[float, str]]] = {tid: [] for tid in tids}
        self._times: dict[int, list[float]] = {}
        for line in text.splitlines():
            m = LINE_T.match(line)
            sw = SWITCH.search(line) if m else None
            if sw is None or m is None:
                continue
            t, prev, state, nxt = float(m.group(1)), int(sw.group(1)), sw.group(2), int(sw.group(3))
            if prev in self._states:
                self._states[prev].append((t, "runnable" if state.startswith("R") else "blocked"))
            if nxt in self._states:
                self._states[nxt].append((t, "running"))
        for tid, changes in self._states.items():
            changes.sort()
            self._times[tid] = [at for at, _ in changes]

    def split(self, tid: int, start: float, end: float) -> dict[str, float]:
        """Seconds of [start, end] that ``tid`` spent running, runnable and blocked."""
        out = {"running": 0.0, "runnable": 0.0, "blocked": 0.0}
        changes, times = self._states.get(tid, []), self._times.get(tid, [])
        i = bisect.bisect_right(times, start)
        state, t = changes[i - 1][1] if i else "running", start
        for at, new in changes[i:]:
            if at >= end:
                break
            out[state] += at - t
            state, t = new, at
        out[state] += end - t
        return out


def parse(text: str, pids: set[int]) -> list[Call]:
    out = []
    for line in text.splitlines():
        m = LINE.match(line)
        if not m or int(m.group(2)) not in pids:
            continue
        comm, pid, tid, t, side, call, args = m.groups()
        if side == "exit":
            ret = int(args.split()[0], 16)
            if 0 < ret < 1 << 32:
                out.append(Call(float(t), int(pid), int(tid), comm, "woke", -1, ret))
            continue
        fd = re.search(r"fd: (0x[0-9a-f]+)", args)
        size = re.search(r"(?:count|len|vlen): (0x[0-9a-f]+)", args)
        out.append(Call(float(t), int(pid), int(tid), comm, call, int(fd.group(1), 16) if fd else -1,
                        int(size.group(1), 16) if size else -1))
    return sorted(out, key=lambda c: c.t)


def first(calls: list[Call], after: float, until: float, test: Any) -> float | None:
    for c in calls:
        if c.t > until:
            return None
        if c.t >= after and test(c):
            return c.t
    return None


def woke(calls: list[Call], tid: int, start: float, until: float) -> float:
    """When ``tid`` came back from waiting with work after ``start``: the first return of its
    epoll wait with ready events before ``until``, else ``start`` (it was running already)."""
    return first(calls, start, until, lambda c: c.tid == tid and c.call == "woke") or start


def ashd_hops(calls: list[Call], r: Roles, t0: float, first_s: float, threads: Threads) -> dict[str, float] | None:
    """The hand-offs of one ashd round (seconds), or None if one is missing from the trace.
    Each hand-off to ashd, the bridge and the model proxy is split in two: ``*_wakes``, from the
    sender's send to the receiver's epoll wait returning (the kernel's wake-up and run-queue
    wait), and the receiver's own work until it sends on."""
    end = t0 + first_s
    at: dict[str, float | None] = {}
    at["post"] = first(calls, t0, end, lambda c: c.pid == r.bench and c.tid == r.bench and c.size > 1)
    at["stdin"] = first(calls, at["post"] or end, end, lambda c: c.pid == r.bridge and c.call == "write" and c.size > 8)
    queries = [c.t for c in calls if c.pid == r.ashd and c.tid == r.ashd and c.call == "sendto"
               and c.fd != r.sse_fd and (at["post"] or end) <= c.t <= (at["stdin"] or 0)]
    at["query"] = queries[-1] if queries else None
    at["request"] = first(calls, at["stdin"] or end, end,
                          lambda c: c.pid == r.cli and c.call == "sendto" and c.size > MODEL_REQUEST_BYTES)
    at["forward"] = first(calls, at["request"] or end, end,
                          lambda c: c.pid == r.ashd and c.tid != r.ashd and c.size > MODEL_REQUEST_BYTES)
    at["response"] = first(calls, at["forward"] or end, end,
                           lambda c: c.pid == r.bench and c.tid != r.bench and c.call == "sendto")
    proxy = next((c.tid for c in calls if at["forward"] is not None and c.t == at["forward"]), -1)
    at["relay"] = first(calls, at["response"] or end, end, lambda c: c.tid == proxy and c.call == "sendto")
    at["cli_out"] = first(calls, at["relay"] or end, end, lambda c: c.pid == r.cli and c.call == "pwritev2")
    at["bridge_out"] = first(calls, at["cli_out"] or end, end,
                             lambda c: c.pid == r.bridge and c.call == "sendto" and c.size > 1)
    at["sse"] = first(calls, at["bridge_out"] or end, end,
                      lambda c: c.pid == r.ashd and c.tid == r.ashd and c.call == "sendto" and c.fd == r.sse_fd)
    if any(v is None for v in at.values()):
        return None
    a: dict[str, float] = {k: v for k, v in at.items() if v is not None}
    ashd_in = woke(calls, r.ashd, a["post"], a["query"])
    bridge_in = woke(calls, r.bridge, a["query"], a["stdin"])
    proxy_in = woke(calls, proxy, a["request"], a["forward"])
    proxy_back = woke(calls, proxy, a["response"], a["relay"])
    bridge_back = woke(calls, r.bridge, a["cli_out"], a["bridge_out"])
    ashd_back = woke(calls, r.ashd, a["bridge_out"], a["sse"])
    work = {"ashd": [(r.ashd, ashd_in, a["query"]), (r.ashd, ashd_back, a["sse"])],
            "bridge": [(r.bridge, bridge_in, a["stdin"]), (r.bridge, bridge_back, a["bridge_out"])],
            "proxy": [(proxy, proxy_in, a["forward"]), (proxy, proxy_back, a["relay"])]}
    states = {f"{who}_work_{state}": sum(threads.split(*span)[state] for span in spans)
              for who, spans in work.items() for state in ("running", "runnable", "blocked")}
    return {**states,
        "client_sends": a["post"] - t0,
        "ashd_wakes": ashd_in - a["post"],
        "ashd_to_query": a["query"] - ashd_in,
        "bridge_wakes": bridge_in - a["query"],
        "bridge_to_stdin": a["stdin"] - bridge_in,
        "cli_to_request": a["request"] - a["stdin"],
        "proxy_wakes": proxy_in - a["request"],
        "proxy_forwards": a["forward"] - proxy_in,
        "model_answers": a["response"] - a["forward"],
        "proxy_wakes_back": proxy_back - a["response"],
        "proxy_relays": a["relay"] - proxy_back,
        "cli_to_output": a["cli_out"] - a["relay"],
        "bridge_wakes_back": bridge_back - a["cli_out"],
        "bridge_relays": a["bridge_out"] - bridge_back,
        "ashd_wakes_back": ashd_back - a["bridge_out"],
        "ashd_to_sse": a["sse"] - ashd_back,
        "client_to_first_delta": end - a["sse"],
    }


def direct_hops(calls: list[Call], r: Roles, t0: float, first_s: float) -> dict[str, float] | None:
    end = t0 + first_s
    stdin = first(calls, t0, end, lambda c: c.pid == r.bench and c.call == "write" and c.size > 8)
    request = first(calls, stdin or end, end,
                    lambda c: c.pid == r.direct_cli and c.call == "sendto" and c.size > MODEL_REQUEST_BYTES)
    response = first(calls, request or end, end,
                     lambda c: c.pid == r.bench and c.tid != r.bench and c.call == "sendto")
    out = first(calls, response or end, end, lambda c: c.pid == r.direct_cli and c.call == "pwritev2")
    if None in (stdin, request, response, out):
        return None
    assert stdin is not None and request is not None and response is not None and out is not None
    return {"client_sends": stdin - t0, "cli_to_request": request - stdin, "model_answers": response - request,
            "cli_to_output": out - response, "client_to_first_delta": end - out}


def with_sse_fd(who: Roles, calls: list[Call]) -> Roles:
    sends = Counter(c.fd for c in calls
                    if c.pid == who.ashd and c.tid == who.ashd and c.call == "sendto" and c.size > 1)
    return dataclasses.replace(who, sse_fd=sends.most_common(1)[0][0])


def roles(daemon_pid: int, direct_cli: int) -> Roles:
    tree = ashd_roles(psutil.Process(daemon_pid))
    if len(tree["cli"]) != 1 or len(tree["bridge"]) != 1:
        raise SystemExit(f"expected one sandboxed CLI and its bridge under ashd, found {tree}")
    return Roles(os.getpid(), daemon_pid, -1, tree["bridge"][0], tree["cli"][0], direct_cli)


async def run(rounds: int, warmup: int, mirrored: bool) -> dict[str, Any]:
    if shutil.which("perf") is None:
        raise SystemExit("perf is not installed (Debian: apt-get install linux-perf)")
    model = ScriptedModel()
    model.start()
    tmp = scratch("ashd-hops-")
    daemon = AshdProcess(tmp / "data", model.base_url, extra_env={"ASH_LOG_LEVEL": "warning"}).start()
    direct = Direct(model.base_url, tmp / "direct", MemoryStore() if mirrored else None)
    await direct.client.connect()
    marks: list[tuple[str, float, float]] = []
    try:
        with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=60) as client:
            session_id = bench_session(client)
            for _ in range(warmup):
                ashd_turn(client, session_id)
                await direct.turn()
            assert daemon.proc is not None
            direct_cli = [p.pid for p in psutil.Process().children(recursive=True) if p.name() == "claude"]
            who = roles(daemon.proc.pid, direct_cli[0])
            trace = tmp / "perf.data"
            events = ",".join([f"syscalls:sys_enter_{c}" for c in CALLS] + [f"syscalls:sys_exit_{w}" for w in WAITS]
                              + ["sched:sched_switch"])
            perf = subprocess.Popen(["perf", "record", "-q", "-k", "CLOCK_MONOTONIC", "-a", "-o", str(trace),
                                     "-e", events], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)  # perf is recording
            for _ in range(rounds):
                t0 = time.monotonic()
                first_ms, _ = await direct.turn()
                marks.append(("direct", t0, first_ms / 1000))
                t0 = time.monotonic()
                first_ms, _ = ashd_turn(client, session_id)
                marks.append(("ashd", t0, first_ms / 1000))
            time.sleep(0.2)
            perf.send_signal(signal.SIGINT)
            perf.wait()
    finally:
        daemon.stop()
        model.stop()
    text = subprocess.run(["perf", "script", "-i", str(trace), "-F", "comm,tid,pid,time,event,trace"],
                          capture_output=True, text=True, check=True).stdout
    shutil.rmtree(tmp, ignore_errors=True)
    calls = parse(text, {who.bench, who.ashd, who.bridge, who.cli, who.direct_cli})
    who = with_sse_fd(who, calls)
    threads = Threads(text, {c.tid for c in calls if c.pid in (who.ashd, who.bridge)})
    per: dict[str, list[dict[str, float]]] = {"direct": [], "ashd": []}
    for kind, t0, first_s in marks:
        hops = (direct_hops(calls, who, t0, first_s) if kind == "direct"
                else ashd_hops(calls, who, t0, first_s, threads))
        if hops is not None:
            per[kind].append(hops)
    return {**report(per, rounds), "direct_mirrors_transcript": mirrored}


def report(per: dict[str, list[dict[str, float]]], rounds: int) -> dict[str, Any]:
    medians = {kind: {k: round(statistics.median(h[k] for h in hops) * 1000, 2) for k in hops[0]}
               for kind, hops in per.items() if hops}
    d, a = medians.get("direct", {}), medians.get("ashd", {})
    added = {
        "client_http_stack": round(a["client_sends"] + a["client_to_first_delta"]
                                   - d["client_sends"] - d["client_to_first_delta"], 2),
        "ashd_work": round(a["ashd_to_query"] + a["ashd_to_sse"], 2),
        "ashd_wakeups": round(a["ashd_wakes"] + a["ashd_wakes_back"], 2),
        "bridge_work": round(a["bridge_to_stdin"] + a["bridge_relays"], 2),
        "bridge_wakeups": round(a["bridge_wakes"] + a["bridge_wakes_back"], 2),
        "model_proxy_work": round(a["proxy_forwards"] + a["proxy_relays"] + a["model_answers"] - d["model_answers"], 2),
        "model_proxy_wakeups": round(a["proxy_wakes"] + a["proxy_wakes_back"], 2),
        "cli_in_sandbox_vs_outside": round(a["cli_to_request"] + a["cli_to_output"]
                                           - d["cli_to_request"] - d["cli_to_output"], 2),
    } if a and d else {}
    return {
        "rounds": rounds,
        "rounds_read": {kind: len(hops) for kind, hops in per.items()},
        "median_ms": medians,
        "added_to_first_delta_ms": added,
        "added_to_first_delta_sum_ms": round(sum(added.values()), 2),
        "method": "perf record of sendto/write/writev/pwritev2/sendmsg entries and epoll-wait returns across all "
                  "processes; rounds alternate direct / ashd; medians per segment (see the docstring)",
        "machine": machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--mirrored", action="store_true",
                        help="the direct client mirrors its transcript to an SDK session store, as the bridge does")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = asyncio.run(run(args.rounds, args.warmup, args.mirrored))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
