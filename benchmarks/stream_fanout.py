"""Added latency of an event seen through another daemon (the Postgres fan-out) vs the one running the turn.

Method: two real ashd processes (A and B, own data dirs and ports, SQLite off) on one fresh
Postgres database and one scripted model server. One session on A. Two followers, one on
each daemon, hold ``GET /api/sessions/:id/stream?follow=true`` open from the same event id,
each read by a thread of this process that stamps every frame with ``time.perf_counter()`` as
it arrives. Turns are sent to A (streaming partial messages: many small events per turn, the
model waits ``--slow`` ms between them). A's follower gets each frame from the turn in memory
(the local fast path, after its batch commits); B's gets it from the store when the listener
hears the batch's NOTIFY. Both watch the very same events at the same time, so the baseline
is interleaved with the measurement at the finest grain. For each event id: B's arrival
minus A's. Reported: median, p90, p99, mean, max over all events, and over each turn's
first event and its ``done``; the load average before and after.

    .venv/bin/python benchmarks/stream_fanout.py --turns 20 --out benchmarks/results/stream_fanout.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ashd.scripted.server import ScriptedModel  # noqa: E402
from benchmarks.message_latency import bench_session, emit, machine, percentile  # noqa: E402
from benchmarks.scratch import scratch  # noqa: E402
from tests.e2e.test_fanout import frames  # noqa: E402
from tests.store.pg import fresh_pg_database  # noqa: E402
from tests.support.daemon import AshdProcess  # noqa: E402

KEY = "ash_bench_admin"
HEADERS = {"Authorization": f"Bearer {KEY}"}
WAIT_S = 120.0


class Follower(threading.Thread):
    """One daemon's follow stream: when each event id arrived here."""

    def __init__(self, daemon: AshdProcess, sid: str, after: int) -> None:
        super().__init__(daemon=True)
        self.url = f"{daemon.url}/api/sessions/{sid}/stream"
        self.after = after
        self.arrived: dict[int, tuple[float, str]] = {}
        self.dones = 0
        self.connected = threading.Event()

    def run(self) -> None:
        headers = {**HEADERS, "Last-Event-ID": str(self.after)}
        try:
            with httpx.stream("GET", self.url, headers=headers, params={"follow": "true"}, timeout=WAIT_S) as resp:
                self.connected.set()
                for _, (event_id, name, _) in frames(resp.iter_text()):
                    assert event_id is not None
                    self.arrived[event_id] = (time.perf_counter(), name)
                    self.dones += name == "done"
        except httpx.HTTPError:
            pass  # the daemons stop at the end of the run


def summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "median_ms": round(statistics.median(values), 2),
            "p90_ms": round(percentile(values, 0.90), 2), "p99_ms": round(percentile(values, 0.99), 2),
            "mean_ms": round(statistics.fmean(values), 2), "max_ms": round(max(values), 2)}


def turn(client: httpx.Client, sid: str, prompt: str) -> None:
    with client.stream("POST", f"/api/sessions/{sid}/messages",
                       json={"content": prompt, "includePartialMessages": True}) as resp:
        body = "".join(resp.iter_text())
    assert "event: done" in body and "event: error" not in body, body[-500:]


def wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.01)


def run(turns: int, words: int, slow_ms: int) -> dict[str, Any]:
    prompt = f"[[slow: {slow_ms}]] [[say: " + " ".join(f"w{i}" for i in range(words)) + "]]"
    load_before = [round(x, 2) for x in os.getloadavg()]
    model = ScriptedModel()
    model.start()
    tmp = scratch("ashd-bench-fanout-")
    env = {"ASH_API_KEY": KEY, "ASH_LOG_LEVEL": "warning"}
    try:
        with fresh_pg_database() as db:
            a = AshdProcess(tmp / "a", model.base_url, db, env).start()
            b = AshdProcess(tmp / "b", model.base_url, db, env).start()
            try:
                with httpx.Client(base_url=a.url, headers=HEADERS, timeout=WAIT_S) as client:
                    sid = bench_session(client)
                    turn(client, sid, prompt)  # warm-up: the agent process, both daemons' connections
                    after = int(client.get(f"/api/sessions/{sid}/stream").text.split("id: ")[-1].split("\n")[0])
                    on_a, on_b = Follower(a, sid, after), Follower(b, sid, after)
                    for follower in (on_a, on_b):
                        follower.start()
                        follower.connected.wait(WAIT_S)
                    time.sleep(0.5)  # both have replayed (nothing) and wait for the next turn
                    for n in range(1, turns + 1):
                        turn(client, sid, prompt)
                        wait_for(lambda n=n: on_a.dones >= n and on_b.dones >= n, f"turn {n} on both followers")
                    client.delete(f"/api/sessions/{sid}")
            finally:
                a.stop()
                b.stop()
    finally:
        model.stop()
    assert on_a.arrived.keys() == on_b.arrived.keys()
    added = {i: (on_b.arrived[i][0] - on_a.arrived[i][0]) * 1000 for i in on_a.arrived}
    names = {i: name for i, (_, name) in on_a.arrived.items()}
    return {
        "method": "B's arrival minus A's for each event id, both followers open at once (see the docstring)",
        "prompt": prompt, "turns": turns, "events": len(added),
        "b_minus_a": {
            "all_events": summary(list(added.values())),
            "session_start": summary([d for i, d in added.items() if names[i] == "session_start"]),
            "done": summary([d for i, d in added.items() if names[i] == "done"]),
        },
        "loadavg_before": load_before,
        "machine": machine(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--words", type=int, default=40)
    parser.add_argument("--slow", type=int, default=10, help="ms the model waits between streamed events")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    emit(run(args.turns, args.words, args.slow), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
