"""A runner link over a real WebSocket on loopback, for the tests: the runner's handler in a
tornado server on a free port, the coordinator's client pointed at it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

import tornado.httpserver
import tornado.web

from ashd.runnerlink.endpoint import PATH, Backoff, LinkClient, RunnerEnd, RunnerLinkHandler, Welcome
from ashd.runnerlink.mux import Handler, Json, Mux

SECRET = "s3cret-for-tests"
FAST = Backoff(base_s=0.05, cap_s=0.2)


async def no_requests(mux: Mux, body: Json) -> Json | None:
    raise ValueError(f"unexpected {body['op']}")


def listen(end: RunnerEnd, port: int = 0,
           handler: type[RunnerLinkHandler] = RunnerLinkHandler) -> tuple[tornado.httpserver.HTTPServer, int]:
    app = tornado.web.Application([(PATH, handler, {"end": end})])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(16)
    sock.setblocking(False)
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets([sock])
    return server, sock.getsockname()[1]


@dataclass
class Watch:
    """What a client reported: each up (with the runner's welcome) and each down."""

    ups: list[Welcome] = field(default_factory=list)
    downs: list[str] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def up(self, mux: Mux, welcome: Welcome) -> None:
        self.ups.append(welcome)
        self.changed.set()

    def down(self, why: str) -> None:
        self.downs.append(why)
        self.changed.set()

    async def until(self, check: Callable[[], bool], timeout: float = 30.0) -> None:
        """Wait (polling, woken early by an up or down) until ``check()`` holds."""
        async with asyncio.timeout(timeout):
            while not check():
                self.changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), 0.05)


def client(port: int, serve: Callable[[Mux], Handler] = lambda mux: no_requests, secret: str = SECRET,
           runner_id: str = "r1", watch: Watch | None = None) -> LinkClient:
    watch = watch or Watch()
    return LinkClient(f"ws://127.0.0.1:{port}{PATH}", secret, runner_id, serve, on_up=watch.up,
                      on_down=watch.down, backoff=FAST)
