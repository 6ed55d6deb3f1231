"""The HTTP listener as a child of the root supervisor: last to start, first to stop.

Tornado binds and stops its sockets on the IOLoop, while the root runs on its own thread:
start waits for the loop to bind, the ping is the loop answering a no-op in time, and stop
only posts ``server.stop()`` to the loop (the daemon may be waiting on the loop for the root).
Not restartable: handlers reach the actors through the tree's registry, never a cached ref,
so a restarted pool or session supervisor needs no new listener.
"""

from __future__ import annotations

import asyncio
import concurrent.futures

import tornado.httpserver
import tornado.netutil

from ashd.actors.children import ChildSpec, Crashed

BIND_TIMEOUT_S = 30.0


def listener_child(loop: asyncio.AbstractEventLoop, server: tornado.httpserver.HTTPServer, host: str,
                   port: int) -> ChildSpec:
    async def listen() -> None:
        server.add_sockets(tornado.netutil.bind_sockets(port, host))

    def start(crashed: Crashed) -> tornado.httpserver.HTTPServer:
        del crashed  # the listener reports no crashes of its own: its failures are the loop's
        asyncio.run_coroutine_threadsafe(listen(), loop).result(timeout=BIND_TIMEOUT_S)
        return server

    def ping(handle: object, timeout_s: float) -> bool:
        try:
            asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(timeout=timeout_s)
        except (concurrent.futures.TimeoutError, RuntimeError):
            return False
        return True

    def stop(handle: tornado.httpserver.HTTPServer, timeout_s: float) -> bool:
        loop.call_soon_threadsafe(handle.stop)
        return True

    return ChildSpec("http", start, ping, stop, restartable=False)
