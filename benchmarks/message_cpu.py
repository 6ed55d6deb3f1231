"""Where ashd's own CPU goes per warm message: by thread, as CPU time or as instructions.

One ashd (SQLite, the scripted model, one session, warm-up turns first) and N messages.

``--mode threads`` (default): the CPU time (user + system, /proc) each of ashd's threads
spent during the N messages, divided by N, with the threads named by ``py-spy dump``
(``.venv/bin/pip install py-spy``; without it threads keep their numbers). Wall-clock free,
but a loaded machine still inflates it (cache misses, preemption, lock hand-offs).

``--mode callgrind``: ashd runs under ``valgrind --tool=callgrind`` with instrumentation
switched on only for the N messages; reported are the instructions ashd executed per message
in user space (the kernel's share, e.g. socket sends, is not counted), per thread. Nearly
deterministic, so two checkouts can be compared on a busy machine (``--repo``); it counts
time-driven work (pollers, debounced writes) by how long the N messages took, which is much
longer under valgrind, so compare totals of runs of the same length.

    .venv/bin/python benchmarks/message_cpu.py --messages 100
    .venv/bin/python benchmarks/message_cpu.py --mode callgrind --messages 20 --repo /path/to/other/checkout
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ashd.scripted.server import ScriptedModel  # noqa: E402
from benchmarks.message_latency import ashd_turn, bench_session, machine  # noqa: E402
from benchmarks.scratch import scratch  # noqa: E402
from tests.support.daemon import AshdProcess  # noqa: E402

WARMUP = 10
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def thread_cpu_ms(pid: int) -> dict[str, float]:
    """CPU time (ms) per thread id of ``pid``, from /proc."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended
        out[tid] = (int(fields[11]) + int(fields[12])) * 1000 / CLOCK_TICKS
    return out


def thread_names(pid: int) -> dict[str, str]:
    """Python thread names by thread id (``py-spy dump``), or {} without py-spy."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return {}
    dump = subprocess.run([spy, "dump", "-p", str(pid)], capture_output=True, text=True, timeout=60).stdout
    return dict(re.findall(r'Thread (\d+) \(\w+\): "([^"]*)"', dump))


def by_thread(pid: int, before: dict[str, float], messages: int) -> dict[str, float]:
    names = thread_names(pid)
    after = thread_cpu_ms(pid)
    per: dict[str, float] = {}
    for tid, ms in after.items():
        name = re.sub(r"[_-]?\d+$", "", names.get(tid, f"thread {tid}"))
        per[name] = per.get(name, 0.0) + (ms - before.get(tid, 0.0)) / messages
    return {name: round(ms, 2) for name, ms in sorted(per.items(), key=lambda kv: -kv[1]) if ms >= 0.05}


def callgrind_totals(out_dir: Path, messages: int) -> dict[str, float]:
    """Million instructions per message per valgrind thread number (1 is the main thread)."""
    per = {}
    for path in glob.glob(str(out_dir / "cg.out.*")):
        total = next((int(line.split()[1]) for line in open(path) if line.startswith("totals:")), 0)
        if total:
            per[f"thread {int(Path(path).name.rsplit('-', 1)[1])}"] = round(total / messages / 1e6, 2)
    return dict(sorted(per.items(), key=lambda kv: -kv[1]))


def run(mode: str, messages: int, repo: Path) -> dict[str, Any]:
    model = ScriptedModel()
    model.start()
    tmp = scratch("ashd-cpu-")
    wrap: list[str] = []
    if mode == "callgrind":
        wrap = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--separate-threads=yes",
                f"--callgrind-out-file={tmp}/cg.out.%p"]
    daemon = AshdProcess(tmp / "data", model.base_url, wrap=wrap, repo=repo,
                         extra_env={"ASH_LOG_LEVEL": "warning", "ASH_BRIDGE_READY_TIMEOUT_S": "300"})
    daemon.start(timeout=900)
    assert daemon.proc is not None
    pid = daemon.proc.pid
    report: dict[str, Any] = {"mode": mode, "messages": messages, "repo": str(repo)}
    try:
        with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=600) as client:
            session_id = bench_session(client, repo)
            for _ in range(WARMUP):
                ashd_turn(client, session_id)
            before = thread_cpu_ms(pid)
            if mode == "callgrind":
                subprocess.run(["callgrind_control", "-i", "on", str(pid)], check=True, capture_output=True)
            started = time.perf_counter()
            for _ in range(messages):
                ashd_turn(client, session_id)
            report["seconds"] = round(time.perf_counter() - started, 1)
            if mode == "callgrind":
                subprocess.run(["callgrind_control", "-i", "off", str(pid)], check=True, capture_output=True)
                subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
            else:
                per = by_thread(pid, before, messages)
                report["cpu_ms_per_message"] = round(sum(per.values()), 2)
                report["cpu_ms_per_message_by_thread"] = per
    finally:
        daemon.stop(timeout=300)
        model.stop()
    if mode == "callgrind":
        per = callgrind_totals(tmp, messages)
        report["minstr_per_message"] = round(sum(per.values()), 2)
        report["minstr_per_message_by_thread"] = per
    report["machine"] = machine()
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=("threads", "callgrind"), default="threads")
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--repo", type=Path, default=REPO, help="the ashd checkout to run (default: this one)")
    args = parser.parse_args()
    print(json.dumps(run(args.mode, args.messages, args.repo.resolve()), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
