"""ashd's process topology with none of ashd's work: the floor of its design, for ``message_latency.py``.

ashd's path to the model crosses two hops the bare relay (``bare_relay.py``) does not: a bridge
process that holds the SDK client (a crash of it must not take the daemon down) and a model
proxy that holds the credential (the CLI never sees it). This relay has the same hops and
nothing else:

- this process (Tornado): ``POST /messages`` with ``{"content": ...}`` writes the query as one
  JSON line to the bridge's Unix socket and streams every line the bridge sends back as an SSE
  frame (``text_delta`` for a text delta, ``message`` for the rest, ``done`` after the result),
  flushing each;
- the bridge (``hop_relay.py bridge``, a process of its own): one connected ``ClaudeSDKClient``
  (the direct path's options), which sends each query line to the CLI and each raw message back
  as one JSON line;
- the model proxy (an asyncio loop on a thread of this process, as ashd's is): reads each of the
  CLI's requests whole and forwards it on a kept-alive upstream connection, relaying the reply as
  it comes with ashd's own HTTP/1.1 framing (:mod:`ashd.proxy.http1`). It checks nothing,
  meters nothing and holds no token.

No authentication, store, actors, sandbox or body check: ``ashd_added_vs_floor`` is what ashd's
own work on this topology costs, ``floor_added`` what the topology costs in Python by itself.

    python benchmarks/hop_relay.py --port 4199 --model-url http://127.0.0.1:PORT --root DIR
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import tornado.web

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ashd.proxy import http1  # noqa: E402
from ashd.proxy.loop import ProxyLoop  # noqa: E402
from ashd.proxy.replies import client_head  # noqa: E402
from benchmarks.bare_relay import Ready, relay, start_stream  # noqa: E402
from benchmarks.message_latency import Direct  # noqa: E402

MAX_BODY = 32 * 1024 * 1024
LINE_LIMIT = 16 * 1024 * 1024


class Messages(tornado.web.RequestHandler):
    def initialize(self, bridge: Bridge) -> None:
        self.bridge = bridge

    async def post(self) -> None:
        content = json.loads(self.request.body)["content"]
        start_stream(self)
        async with self.bridge.lock:
            self.bridge.writer.write(json.dumps({"content": content}).encode() + b"\n")
            await relay(self, self._lines())

    async def _lines(self) -> AsyncIterator[tuple[dict[str, Any], str]]:
        while line := await self.bridge.reader.readline():
            yield json.loads(line), line.decode().rstrip()


class Bridge:
    """The bridge process and this process's end of its socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, proc: subprocess.Popen[bytes]):
        self.reader, self.writer, self.proc = reader, writer, proc
        self.lock = asyncio.Lock()


async def start_bridge(model_url: str, root: Path) -> Bridge:
    ours, theirs = socket.socketpair()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "bridge", "--fd", str(theirs.fileno()),
                             "--model-url", model_url, "--root", str(root)], pass_fds=[theirs.fileno()])
    theirs.close()
    reader, writer = await asyncio.open_unix_connection(sock=ours, limit=LINE_LIMIT)
    ready = await reader.readline()
    if ready.strip() != b"ready":
        raise RuntimeError(f"the bridge did not start (it said {ready!r})")
    return Bridge(reader, writer, proc)


async def run_bridge(fd: int, model_url: str, root: Path) -> None:
    """The bridge process: one SDK client, a query per line in, a JSON line per message out."""
    client = Direct(model_url, root).client
    await client.connect()
    reader, writer = await asyncio.open_unix_connection(sock=socket.socket(fileno=fd), limit=LINE_LIMIT)
    writer.write(b"ready\n")
    while line := await reader.readline():  # until the relay's end closes (it exited)
        await client.query(json.loads(line)["content"])
        async for raw in client._query.receive_messages():  # type: ignore[union-attr]
            writer.write(json.dumps(raw).encode() + b"\n")
            if raw.get("type") == "result":
                break
    await client.disconnect()


class PassThroughProxy:
    """The model proxy's hop without its work, on a loop thread of its own (ashd's ProxyLoop)."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # asyncio sets TCP_NODELAY
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        sock.setblocking(False)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self._loop = ProxyLoop()
        self._loop.serve(sock, self._serve)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self._host, self._port, limit=256 * 1024)
        try:
            while (head := await http1.read_head(reader)) is not None:
                body = await http1.read_body(head, reader, MAX_BODY)
                headers = [*head.without("host", "content-length", "connection", "transfer-encoding"),
                           ("host", f"{self._host}:{self._port}"), ("connection", "keep-alive"),
                           ("content-length", str(len(body)))]
                up_writer.write(http1.encode_head(head.start, headers) + body)
                resp = await http1.read_head(up_reader)
                if resp is None:
                    break
                await http1.relay_body(resp, up_reader, writer, until_eof=True, first=client_head(resp, keep=True))
        except (http1.HttpError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            up_writer.close()
            writer.close()


async def serve(port: int, model_url: str, root: Path) -> None:
    proxy = PassThroughProxy(model_url)
    bridge = await start_bridge(proxy.url, root)
    app = tornado.web.Application([(r"/messages", Messages, {"bridge": bridge}), (r"/ready", Ready)])
    app.listen(port, "127.0.0.1")
    try:
        await asyncio.Event().wait()
    finally:
        bridge.proc.terminate()


def main(argv: list[str] | None = None) -> Any:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("role", nargs="?", choices=["relay", "bridge"], default="relay")
    parser.add_argument("--port", type=int)
    parser.add_argument("--fd", type=int)
    parser.add_argument("--model-url", required=True)
    parser.add_argument("--root", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.role == "bridge":
        asyncio.run(run_bridge(args.fd, args.model_url, args.root))
    else:
        asyncio.run(serve(args.port, args.model_url, args.root))


if __name__ == "__main__":
    main()
