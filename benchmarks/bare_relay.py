"""The least an HTTP + SSE API around the SDK can add: a bare relay, for ``message_latency.py``.

One Tornado process holding one connected ``ClaudeSDKClient`` (the bridge's options, no
session store): ``POST /messages`` with ``{"content": ...}`` sends the query and streams every
message back as an SSE frame (``text_delta`` for a text delta, ``message`` for the rest, ``done``
after the result), flushing each. No authentication, no storage, no actors, no bridge process,
no sandbox, no model proxy: what is left is one HTTP hop and one SSE stream in Python, on the
stack ashd is built on. ``message_latency.py`` runs it as its ``relay`` path.

    python benchmarks/bare_relay.py --port 4199 --model-url http://127.0.0.1:PORT --root DIR
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import tornado.web
from claude_agent_sdk import ClaudeSDKClient

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.message_latency import Direct  # noqa: E402


class Messages(tornado.web.RequestHandler):
    def initialize(self, client: ClaudeSDKClient) -> None:
        self.client = client

    async def post(self) -> None:
        content = json.loads(self.request.body)["content"]
        start_stream(self)
        await self.client.query(content)
        await relay(self, ((raw, json.dumps(raw)) async for raw in self.client._query.receive_messages()))  # type: ignore[union-attr]


def start_stream(handler: tornado.web.RequestHandler) -> None:
    handler.request.connection.stream.set_nodelay(True)  # type: ignore[union-attr]  # as ashd's SSE does
    handler.set_header("Content-Type", "text/event-stream")


async def relay(handler: tornado.web.RequestHandler, messages: AsyncIterator[tuple[dict[str, Any], str]]) -> None:
    """Each (message, its JSON) as an SSE frame, flushed, until the result; then ``done``."""
    async for raw, data in messages:
        name = "text_delta" if raw.get("type") == "stream_event" and "text_delta" in data else "message"
        handler.write(f"event: {name}\ndata: {data}\n\n")
        await handler.flush()
        if raw.get("type") == "result":
            break
    handler.write("event: done\ndata: {}\n\n")


class Ready(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("ok")


async def serve(port: int, model_url: str, root: Path) -> None:
    client = Direct(model_url, root).client  # the direct path's client, set up the same way
    await client.connect()
    app = tornado.web.Application([(r"/messages", Messages, {"client": client}), (r"/ready", Ready)])
    app.listen(port, "127.0.0.1")
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> Any:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model-url", required=True)
    parser.add_argument("--root", type=Path, required=True)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.port, args.model_url, args.root))


if __name__ == "__main__":
    main()
