"""SSE frames per second from one ashd process: many subscribers replaying a long stored stream.

Method: a real ashd (SQLite, bwrap sandbox, scripted model) gets one session whose stream is
filled by ``--turns`` real turns with partial messages (each ~70 frames: 64 text deltas and
the rest). Then ``--subscribers`` clients at once each replay the whole stream
(``GET /api/sessions/:id/stream?after=0``: every stored frame, then the end, as Ash), ``--rounds``
times. Clients are raw asyncio sockets that only count bytes and frames (``bytes.count``), so
the client side costs little of the 2 cores. Reported per round: frames delivered (all
subscribers), wall seconds, frames/s, and ashd's own CPU (user + system, psutil) per frame;
then the median round. With ``--distinct`` subscriber k replays after id k, so no two share a
replay page: every page is read and encoded per subscriber (the cost without sharing). The
figure is a replay's; a live turn's frames take the same write path.

    .venv/bin/python benchmarks/sse_throughput.py --out benchmarks/results/sse_throughput.json
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ashd.scripted.server import ScriptedModel  # noqa: E402
from benchmarks.message_latency import bench_session, emit, machine  # noqa: E402
from benchmarks.scratch import scratch  # noqa: E402
from tests.support.daemon import AshdProcess  # noqa: E402

SAY = "[[say: " + " ".join(f"word{i}" for i in range(64)) + "]]"


async def replay(url: str, key: str, session_id: str, after: int = 0) -> tuple[int, int]:
    """One subscriber: the stream after ``after``, read to its end. Returns (frames, bytes)."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(f"GET /api/sessions/{session_id}/stream?after={after} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                 f"Authorization: Bearer {key}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    frames = size = 0
    tail = b""
    while chunk := await reader.read(1 << 16):
        data = tail + chunk
        frames += data.count(b"\nevent: ")
        tail = data[-8:]  # a marker split between reads is counted once
        frames -= tail.count(b"\nevent: ")
        size += len(chunk)
    frames += tail.count(b"\nevent: ")
    writer.close()
    return frames, size


async def round_(url: str, key: str, session_id: str, subscribers: int, proc: psutil.Process,
                 distinct: bool) -> dict[str, Any]:
    cpu0, t0 = _cpu_s(proc), time.perf_counter()
    results = await asyncio.gather(*(replay(url, key, session_id, k if distinct else 0) for k in range(subscribers)))
    wall, cpu = time.perf_counter() - t0, _cpu_s(proc) - cpu0
    frames = sum(f for f, _ in results)
    return {"frames": frames, "bytes": sum(b for _, b in results), "wall_s": round(wall, 4),
            "frames_per_s": round(frames / wall), "ashd_cpu_us_per_frame": round(cpu * 1e6 / frames, 2)}


def _cpu_s(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def fill(client: httpx.Client, turns: int) -> str:
    session_id = bench_session(client)
    for _ in range(turns):
        with client.stream("POST", f"/api/sessions/{session_id}/messages",
                           json={"content": SAY, "includePartialMessages": True}) as resp:
            resp.read()
    return session_id


def run(turns: int, subscribers: int, rounds: int, distinct: bool) -> dict[str, Any]:
    model = ScriptedModel()
    model.start()
    tmp = scratch("ashd-sse-bench-")
    daemon = AshdProcess(tmp / "data", model.base_url, extra_env={"ASH_LOG_LEVEL": "warning"}).start()
    assert daemon.proc is not None
    proc = psutil.Process(daemon.proc.pid)
    try:
        with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=120) as client:
            session_id = fill(client, turns)
        stored = asyncio.run(replay(daemon.url, daemon.key, session_id))[0]  # also a warm-up
        runs = [asyncio.run(round_(daemon.url, daemon.key, session_id, subscribers, proc, distinct))
                for _ in range(rounds)]
    finally:
        daemon.stop()
        model.stop()
    expected = stored * subscribers - (sum(range(subscribers)) if distinct else 0)
    assert all(r["frames"] == expected for r in runs), (expected, runs)
    return {
        "method": __doc__.split("\n\n")[1].replace("\n", " "),
        "turns": turns, "stored_frames": stored, "subscribers": subscribers, "distinct": distinct, "rounds": runs,
        "median": {key: statistics.median(r[key] for r in runs) for key in ("frames_per_s", "ashd_cpu_us_per_frame")},
        "machine": machine(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=40)
    parser.add_argument("--subscribers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--distinct", action="store_true",
                        help="subscriber k replays after id k: no two share a replay page (no cache hits)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    emit(run(args.turns, args.subscribers, args.rounds, args.distinct), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
