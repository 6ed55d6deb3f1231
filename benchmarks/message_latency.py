"""Added latency per message: ashd (HTTP + SSE + bridge) versus ClaudeSDKClient directly.

Method: one scripted model server (in this process; ``--model-process``: in a process of its
own, as a real model API is, sharing no GIL with the clients) answers both paths identically. The
direct path is one connected ClaudeSDKClient with the same options the bridge uses, timed
from ``query()`` to its ResultMessage (and to the first text delta). The ashd path is a
real ashd process (SQLite, the default bwrap sandbox) with one session, timed from the POST
to the SSE ``done`` frame (and to the first ``text_delta``). Rounds alternate between the two
paths in blocks so drift on the machine hits both. Each path gets warm-up turns first.
Reported: median, p90, p99, mean per path, and ashd minus direct at each statistic; and
``ashd_cpu_ms_per_message``: the CPU time (user + system, psutil) the ashd process spent
during the ashd blocks, divided by their messages (the bridge and the CLI not included);
and ``ashd_turn_overhead_ms_mean``: ashd's own time from a message's arrival to its query
written to the bridge, from its ``ashd_turn_overhead_seconds`` histogram (sum / count over the
measured messages), a figure the machine's noise moves far less than the end-to-end ones.

A third path, ``mirrored``, is the same direct client with an SDK session store (kept in
memory, every append answered at once), as ashd's bridge has one: the CLI then mirrors every
transcript line to the SDK, which ashd needs to keep the conversation across cold resumes.
``mirror_cost`` is mirrored minus direct (the CLI's and the SDK's own work for that feature)
and ``ashd_added_vs_mirrored`` is ashd minus mirrored, the like-for-like figure.

A fourth path, ``relay``, is ``bare_relay.py``: one Tornado process around a connected SDK
client, streaming each message as an SSE frame, nothing else (no auth, store, actors, bridge,
sandbox or model proxy). ``relay_added`` is what an HTTP + SSE hop in Python costs by itself,
and ``ashd_added_vs_relay`` what ashd adds beyond it. ``--floor`` adds ``floor``, ``hop_relay.py``:
ashd's topology (a bridge process holding the SDK client, a model proxy thread the CLI's model
calls go through) doing none of ashd's work; ``floor_added`` is what those hops cost in Python by
themselves, ``ashd_added_vs_floor`` what ashd's own work on them costs (authentication, durable
commits, the proxy's checks and metering, actors, the sandbox). ``--baseline-repo DIR`` adds a fifth,
``baseline``: the ashd of another checkout in the same blocks (``ashd_minus_baseline``), the
way to compare two versions on a host whose speed drifts between runs. It runs on a throwaway
virtualenv that imports ashd from that checkout and everything else from this one's
(:func:`interpreter_for`): ashd starts its zygote and bridges with ``python -P``, which imports
ashd from the interpreter's install, not from the daemon's working directory, so with this
checkout's interpreter the baseline's bridges would be this checkout's.

``sched_ms_per_message``: per path and process role, the CPU time and the run-queue wait (the
kernel's schedstat: runnable, not running) per message (``schedstat.py``): whether a path's
CLI does more work or only waits longer for a core. ``--pin-cli`` gives every CLI the last
core and everything else the others, after the warm-up.

    .venv/bin/python benchmarks/message_latency.py --rounds 60 --out benchmarks/results/message_latency.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import sysconfig
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
from claude_agent_sdk import ClaudeSDKClient
from claude_agent_sdk.types import SessionKey, SessionStore, SessionStoreEntry

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ashd.bridge.driver import build_options  # noqa: E402
from ashd.sandbox.env import sandbox_env  # noqa: E402
from ashd.scripted.server import ScriptedModel  # noqa: E402
from ashd.wire.settings import BridgeSettings  # noqa: E402
from benchmarks.model_process import ModelProcess  # noqa: E402
from benchmarks.schedstat import Sched, ashd_roles, pin  # noqa: E402
from benchmarks.scratch import scratch  # noqa: E402
from tests.support.daemon import AshdProcess, free_port, sse_events  # noqa: E402

PROMPT = "[[say: the quick brown fox jumps over the lazy dog]]"
BLOCK = 10


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "median_ms": round(statistics.median(values), 2),
        "p90_ms": round(percentile(values, 0.90), 2),
        "p99_ms": round(percentile(values, 0.99), 2),
        "mean_ms": round(statistics.fmean(values), 2),
    }


class MemoryStore(SessionStore):
    """A session store that keeps nothing and answers at once (the mirrored path's)."""

    async def append(self, key: SessionKey, entries: list[SessionStoreEntry]) -> None:
        return None

    async def load(self, key: SessionKey) -> list[SessionStoreEntry] | None:
        return None


class Direct:
    """The baseline: the SDK client exactly as the bridge configures it (with ``store``, as
    the bridge does, mirroring the transcript)."""

    def __init__(self, model_url: str, root: Path, store: SessionStore | None = None) -> None:
        workspace = root / "workspace"
        workspace.mkdir(parents=True)
        env = sandbox_env(home=str(root / "home"), model_base_url=model_url, model_key="k",
                          model_auth_token="", user_env={})
        os.environ.update(env)  # the SDK passes os.environ to the CLI, as in the bridge
        settings = BridgeSettings(session_id=str(uuid.uuid4()), socket_path="unused",
                                  workspace=str(workspace), system_prompt="benchmark agent")
        self.client = ClaudeSDKClient(build_options(settings, store))

    async def turn(self) -> tuple[float, float]:
        start = time.perf_counter()
        first = 0.0
        await self.client.query(PROMPT)
        async for raw in self.client._query.receive_messages():  # type: ignore[union-attr]
            if not first and raw.get("type") == "stream_event" and "text_delta" in json.dumps(raw):
                first = time.perf_counter()
            if raw.get("type") == "result":
                break
        end = time.perf_counter()
        return (first - start) * 1000, (end - start) * 1000

    def cli_pid(self) -> int:
        return int(self.client._transport._process.pid)  # type: ignore[union-attr]


def bench_session(client: httpx.Client, repo: Path = REPO) -> str:
    """Deploy ``repo``'s hello agent as ``bench`` and create a session of it; its id."""
    client.post("/api/agents", json={"name": "bench", "path": str(repo / "examples" / "hello-agent")})
    return str(client.post("/api/sessions", json={"agent": "bench"}).json()["session"]["id"])


def ashd_turn(client: httpx.Client, session_id: str) -> tuple[float, float]:
    return sse_turn(client, f"/api/sessions/{session_id}/messages")


def sse_turn(client: httpx.Client, url: str) -> tuple[float, float]:
    """POST a message to ``url`` and read its SSE reply to ``done``: (first text delta, end) in ms."""
    start = time.perf_counter()
    first = 0.0
    body = []
    with client.stream("POST", url, json={"content": PROMPT, "includePartialMessages": True}) as resp:
        for chunk in resp.iter_text():
            if not first and "event: text_delta" in chunk:
                first = time.perf_counter()
            body.append(chunk)
    end = time.perf_counter()
    names = [name for name, _ in sse_events("".join(body))]
    assert names[-1] == "done" and "error" not in names, names
    return (first - start) * 1000, (end - start) * 1000


async def run(rounds: int, warmup: int, ashd_env: dict[str, str], pin_cli: bool = False,
              baseline_repo: Path | None = None, model_process: bool = False, floor: bool = False) -> dict[str, Any]:
    async with contextlib.AsyncExitStack() as stack:  # whatever started is stopped, even if a start fails
        model: ScriptedModel | ModelProcess
        if model_process:
            model = ModelProcess()
        else:
            model = ScriptedModel()
            model.start()
        stack.callback(model.stop)
        tmp = scratch("ashd-bench-")
        daemons = []
        for name, repo in [("ashd", REPO), *([("baseline", baseline_repo)] if baseline_repo else [])]:
            daemons.append(Ashd(name, tmp / name, model.base_url, ashd_env, repo, interpreter_for(repo, tmp / name)))
            stack.callback(daemons[-1].stop)
        relays = {}
        for name, script in [("relay", "bare_relay.py"), *([("floor", "hop_relay.py")] if floor else [])]:
            relay = RelayProcess(model.base_url, tmp / name, script=script)
            stack.callback(relay.stop)
            relays[name] = (relay, stack.enter_context(httpx.Client(base_url=relay.url, timeout=60)))
        direct = Direct(model.base_url, tmp / "direct")
        mirrored = Direct(model.base_url, tmp / "mirrored", MemoryStore())
        for sdk in (direct, mirrored):
            await sdk.client.connect()
            stack.push_async_callback(sdk.client.disconnect)
        sched = Sched()
        results, overhead = await _measure(rounds, warmup, pin_cli, sched, daemons, relays, direct, mirrored)
    stats = {name: summary(values) for name, values in results.items()}

    def minus(a: str, b: str) -> dict[str, float]:
        return {f"{kind}_{stat}": round(stats[f"{a}_{kind}"][stat] - stats[f"{b}_{kind}"][stat], 2)
                for kind in ("e2e", "first") for stat in ("median_ms", "p90_ms", "p99_ms", "mean_ms")}

    report = {"prompt": PROMPT, "rounds": rounds, "warmup": warmup, "stats": stats,
              "ashd_added": minus("ashd", "direct"), "mirror_cost": minus("mirrored", "direct"),
              "ashd_added_vs_mirrored": minus("ashd", "mirrored"),
              "relay_added": minus("relay", "direct"), "ashd_added_vs_relay": minus("ashd", "relay"),
              "ashd_cpu_ms_per_message": round(daemons[0].cpu_s * 1000 / rounds, 2),
              "ashd_turn_overhead_ms_mean": round(overhead[0] * 1000 / overhead[1], 3),
              "sched_ms_per_message": sched.report(), "machine": machine()}
    if floor:
        report["floor_added"] = minus("floor", "direct")
        report["ashd_added_vs_floor"] = minus("ashd", "floor")
    if baseline_repo is not None:
        report["baseline_repo"] = str(baseline_repo)
        report["ashd_minus_baseline"] = minus("ashd", "baseline")
        report["baseline_cpu_ms_per_message"] = round(daemons[1].cpu_s * 1000 / rounds, 2)
    return report


async def _measure(rounds: int, warmup: int, pin_cli: bool, sched: Sched, daemons: list[Ashd],
                   relays: dict[str, tuple[RelayProcess, httpx.Client]], direct: Direct, mirrored: Direct,
                   ) -> tuple[dict[str, list[float]], tuple[float, float]]:
    """Warm-up turns on every path, then ``rounds`` messages per path in alternating blocks:
    (first, e2e) ms per path, and the first daemon's turn-overhead histogram over them."""
    paths = ["direct", "mirrored", *relays, *(d.name for d in daemons)]
    results: dict[str, list[float]] = {f"{path}_{kind}": [] for path in paths for kind in ("e2e", "first")}

    def record(path: str, first: float, e2e: float) -> None:
        results[f"{path}_first"].append(first)
        results[f"{path}_e2e"].append(e2e)

    for _ in range(warmup):
        await direct.turn()
        await mirrored.turn()
        for _, relay_client in relays.values():
            sse_turn(relay_client, "/messages")
        for daemon in daemons:
            daemon.turn()
    if pin_cli:
        trees = [daemon.roles() for daemon in daemons]
        pin([direct.cli_pid(), mirrored.cli_pid(), *(pid for relay, _ in relays.values() for pid in relay.cli_pids()),
             *(pid for t in trees for pid in t["cli"])],
            [os.getpid(), *(pid for relay, _ in relays.values() for pid in relay.own_pids()),
             *(pid for t in trees for role, pids in t.items() if role != "cli" for pid in pids)])
    before = daemons[0].turn_overhead()
    done = 0
    while done < rounds:
        block = min(BLOCK, rounds - done)
        for path, sdk in (("direct", direct), ("mirrored", mirrored)):
            with sched.count(path, {"client": [os.getpid()], "cli": [sdk.cli_pid()]}, block):
                for _ in range(block):
                    record(path, *await sdk.turn())
        for name, (relay, relay_client) in relays.items():
            roles = {"client": [os.getpid()], "relay": relay.own_pids(), "cli": relay.cli_pids()}
            with sched.count(name, roles, block):
                for _ in range(block):
                    record(name, *sse_turn(relay_client, "/messages"))
        for daemon in daemons:
            with sched.count(daemon.name, daemon.roles(), block), daemon.counting_cpu():
                for _ in range(block):
                    record(daemon.name, *daemon.turn())
        done += block
    after = daemons[0].turn_overhead()
    return results, (after[0] - before[0], after[1] - before[1])


def interpreter_for(repo: Path, where: Path) -> str:
    """A Python whose every process imports ashd from ``repo``: this one for this checkout, else a
    virtualenv made in ``where`` whose ``.pth`` puts ``repo`` first and this interpreter's
    site-packages (the dependencies) after it. Those site-packages' own ``.pth`` files, this
    checkout's editable install among them, are not read from there."""
    if repo.resolve() == REPO.resolve():
        return sys.executable
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "baseline.pth").write_text(f"{repo.resolve()}\n{sysconfig.get_paths()['purelib']}\n")
    return str(python)


class Ashd:
    """One ashd (this checkout's, or ``repo``'s) with one warm session of the hello agent."""

    def __init__(self, name: str, root: Path, model_url: str, env: dict[str, str], repo: Path = REPO,
                 python: str = sys.executable) -> None:
        self.name = name
        root.mkdir(parents=True, exist_ok=True)
        self.daemon = AshdProcess(root / "data", model_url, extra_env={"ASH_LOG_LEVEL": "warning", **env},
                                  repo=repo, python=python).start()
        assert self.daemon.proc is not None
        self.proc = psutil.Process(self.daemon.proc.pid)
        self.client = httpx.Client(base_url=self.daemon.url, headers=self.daemon.headers, timeout=60)
        self.session_id = bench_session(self.client)
        self.cpu_s = 0.0  # the daemon's own CPU (psutil) over the measured blocks

    def turn(self) -> tuple[float, float]:
        return ashd_turn(self.client, self.session_id)

    def roles(self) -> dict[str, list[int]]:
        return ashd_roles(self.proc)

    def turn_overhead(self) -> tuple[float, float]:
        return turn_overhead(self.client)

    @contextlib.contextmanager
    def counting_cpu(self) -> Iterator[None]:
        before = _cpu_s(self.proc)
        yield
        self.cpu_s += _cpu_s(self.proc) - before

    def stop(self) -> None:
        self.client.close()
        self.daemon.stop()


class RelayProcess:
    """A relay script (``bare_relay.py``, or ``hop_relay.py``) in a process of its own, answering
    (its SDK client connected)."""

    def __init__(self, model_url: str, root: Path, timeout_s: float = 60.0, script: str = "bare_relay.py") -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self._proc = subprocess.Popen([sys.executable, str(REPO / "benchmarks" / script), "--port", str(port),
                                       "--model-url", model_url, "--root", str(root)])
        self.pid = self._proc.pid
        deadline = time.monotonic() + timeout_s
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"{script} exited with {self._proc.returncode}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{script} did not answer")
            time.sleep(0.1)

    def cli_pids(self) -> list[int]:
        return [p.pid for p in psutil.Process(self.pid).children(recursive=True) if p.name() == "claude"]

    def own_pids(self) -> list[int]:
        """This relay's process and its Python children (``hop_relay.py``'s bridge)."""
        return [self.pid, *(p.pid for p in psutil.Process(self.pid).children() if p.name() != "claude")]

    def stop(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def turn_overhead(client: httpx.Client) -> tuple[float, float]:
    """ashd's ``ashd_turn_overhead_seconds`` histogram so far: (sum in seconds, count)."""
    text = client.get("/metrics").text
    values = dict(re.findall(r"^ashd_turn_overhead_seconds_(sum|count) (\S+)$", text, re.M))
    return float(values["sum"]), float(values["count"])


def _cpu_s(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    from importlib.metadata import version

    return {
        "cpu": cpu, "cores": psutil.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(), "python": platform.python_version(),
        "claude_agent_sdk": version("claude-agent-sdk"), "ashd": version("ashd"),
        "date": time.strftime("%Y-%m-%d"), "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--ashd-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the ashd under test (e.g. ASH_SANDBOX_ISOLATION=none)")
    parser.add_argument("--baseline-repo", type=Path, metavar="DIR",
                        help="also run the ashd of another checkout (e.g. `git worktree add --detach /tmp/base "
                             "HEAD~1`), as the path `baseline`, in the same blocks: ashd_minus_baseline")
    parser.add_argument("--model-process", action="store_true",
                        help="serve the scripted model from a process of its own instead of a thread of this one")
    parser.add_argument("--floor", action="store_true",
                        help="also run hop_relay.py, ashd's hops (a bridge process, a model proxy thread) doing "
                             "none of ashd's work, as the path `floor`: floor_added, ashd_added_vs_floor")
    parser.add_argument("--pin-cli", action="store_true",
                        help="after the warm-up, run every path's CLI on the last core and everything else "
                             "(this process, ashd, the bridge) on the others: what each path adds without "
                             "its CLI waiting for a core")
    args = parser.parse_args()
    report = asyncio.run(run(args.rounds, args.warmup, dict(kv.split("=", 1) for kv in args.ashd_env), args.pin_cli,
                             args.baseline_repo, args.model_process, args.floor))
    report["ashd_env"] = args.ashd_env
    report["model"] = "own process" if args.model_process else "this process"
    report["pin_cli"] = args.pin_cli
    emit(report, args.out)
    return 0


def emit(report: dict[str, Any], out: Path | None) -> None:
    """Print the report, and write it to ``out`` when given (the committed results)."""
    text = json.dumps(report, indent=2)
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
