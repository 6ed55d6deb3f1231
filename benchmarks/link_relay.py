"""Added latency of the runner link's data path, in isolation: one NDJSON frame's round trip
to an echoing "bridge" socket, directly versus through the coordinator's relay socket, the
authenticated WebSocket link on loopback and the runner's relay (ashd/runnerlink/).

Method: one process, one IOLoop (both ends of the link in it, so no scheduler hop between
processes is counted that a real deployment would have twice more); an echo server on a unix
socket stands in for the bridge. Rounds alternate between the two paths in blocks of BLOCK;
each round writes one frame of FRAME_BYTES and waits for its echo. Reported: median, p90,
p99, mean per path and the link's added time at each statistic.

    .venv/bin/python benchmarks/link_relay.py --rounds 2000 --out benchmarks/results/link_relay.json
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
from pathlib import Path
from typing import Any

import tornado.httpserver
import tornado.web

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ashd.runnerlink.endpoint import PATH, LinkClient, RunnerEnd, RunnerLinkHandler  # noqa: E402
from ashd.runnerlink.mux import Json, Mux  # noqa: E402
from ashd.runnerlink.relay import open_unix, relay  # noqa: E402
from benchmarks.message_latency import emit, machine, summary  # noqa: E402
from benchmarks.scratch import scratch  # noqa: E402

BLOCK = 50
FRAME_BYTES = 200
SECRET = "link-relay-benchmark"


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while line := await reader.readline():
        writer.write(line)
        await writer.drain()
    writer.close()


async def round_trip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, frame: bytes) -> float:
    start = time.perf_counter()
    writer.write(frame)
    await writer.drain()
    await reader.readline()
    return (time.perf_counter() - start) * 1000


async def run(rounds: int) -> dict[str, Any]:
    tmp = scratch("ashd-link-bench-")
    bridge_sock, local_sock = str(tmp / "bridge.sock"), str(tmp / "relay.sock")
    bridge = await asyncio.start_unix_server(echo, bridge_sock)

    relays: set[asyncio.Future[None]] = set()

    def runner_serves(mux: Mux):  # type: ignore[no-untyped-def]
        async def handle(mux: Mux, body: Json) -> Json | None:
            channel = mux.adopt_channel(body["ch"])
            reader, writer = await open_unix(bridge_sock)
            relays.add(asyncio.ensure_future(relay(reader, writer, channel)))
            return None
        return handle

    app = tornado.web.Application([(PATH, RunnerLinkHandler, {"end": RunnerEnd(SECRET, "bench", runner_serves)})])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets([sock])
    client = LinkClient(f"ws://127.0.0.1:{sock.getsockname()[1]}{PATH}", SECRET, "bench", runner_serves)
    client.start()
    mux = await client.wait_up(30)

    async def relayed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        channel = mux.new_channel()
        await mux.request("open", ch=channel.id)
        await relay(reader, writer, channel)

    local = await asyncio.start_unix_server(relayed, local_sock)
    frame = b'{"ev":"message","data":{"type":"stream_event","text":"' + b"x" * (FRAME_BYTES - 60) + b'"}}\n'
    direct = await open_unix(bridge_sock)
    linked = await open_unix(local_sock)
    results: dict[str, list[float]] = {"direct": [], "linked": []}
    for _ in range(100):  # warm-up
        await round_trip(*direct, frame)
        await round_trip(*linked, frame)
    done = 0
    while done < rounds:
        block = min(BLOCK, rounds - done)
        for name, pair in (("direct", direct), ("linked", linked)):
            for _ in range(block):
                results[name].append(await round_trip(*pair, frame))
        done += block
    for _, writer in (direct, linked):
        writer.close()
    await client.stop()
    server.stop()
    local.close()
    bridge.close()
    stats = {name: summary(values) for name, values in results.items()}
    added = {stat: round(stats["linked"][stat] - stats["direct"][stat], 3)
             for stat in ("median_ms", "p90_ms", "p99_ms", "mean_ms")}
    return {"frame_bytes": len(frame), "rounds": rounds, "block": BLOCK, "stats": stats, "link_added": added,
            "machine": machine()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    emit(asyncio.run(run(args.rounds)), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
