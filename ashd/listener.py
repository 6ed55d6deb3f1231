"""The HTTP listener (last to start, first to stop) and other IOLoop services as children of
the root supervisor.

Tornado binds and stops its sockets on the IOLoop, while the root runs on its own thread:
start waits for the loop to bind, the ping is the loop answering a no-op in time, and stop
only posts ``server.stop()`` to the loop (the daemon may be waiting on the loop for the root).
Not restartable: handlers reach the actors through the tree's registry, never a cached ref,
so a restarted pool or session supervisor needs no new listener.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Protocol

import tornado.httpserver
import tornado.netutil

from ashd.actors.children import ChildSpec, Crashed

BIND_TIMEOUT_S = 30.0
SERVICE_STOP_TIMEOUT_S = 15.0


class LoopService(Protocol):
    """Something that runs on the IOLoop (its own tasks): started and stopped there."""

    def start(self) -> None: ...

    async def stop(self) -> None: ...


def listener_child(loop: asyncio.AbstractEventLoop, server: tornado.httpserver.HTTPServer, host: str,
                   port: int, name: str = "http") -> ChildSpec:
    async def listen() -> None:
        server.add_sockets(tornado.netutil.bind_sockets(port, host))

    def start(crashed: Crashed) -> tornado.httpserver.HTTPServer:
        del crashed  # the listener reports no crashes of its own: its failures are the loop's
        asyncio.run_coroutine_threadsafe(listen(), loop).result(timeout=BIND_TIMEOUT_S)
        return server

    def stop(handle: tornado.httpserver.HTTPServer, timeout_s: float) -> bool:
        loop.call_soon_threadsafe(handle.stop)
        return True

    return ChildSpec(name, start, _loop_ping(loop), stop, restartable=False)


def loop_service_child(name: str, loop: asyncio.AbstractEventLoop, service: LoopService) -> ChildSpec:
    """``service`` started on the loop; stopped there, waited for (bounded) on the root's thread
    (the daemon keeps the loop free while the tree stops). Its ping: the loop answers."""

    async def begin() -> None:
        service.start()

    def start(crashed: Crashed) -> LoopService:
        del crashed  # failures inside the service are its own to log and retry
        asyncio.run_coroutine_threadsafe(begin(), loop).result(timeout=BIND_TIMEOUT_S)
        return service

    def stop(handle: LoopService, timeout_s: float) -> bool:
        try:
            asyncio.run_coroutine_threadsafe(handle.stop(), loop).result(timeout=SERVICE_STOP_TIMEOUT_S)
        except (concurrent.futures.TimeoutError, RuntimeError):
            pass  # the loop is gone or busy: the process is ending anyway
        return True

    return ChildSpec(name, start, _loop_ping(loop), stop, restartable=False)


def _loop_ping(loop: asyncio.AbstractEventLoop) -> Callable[[object, float], bool]:
    def ping(handle: object, timeout_s: float) -> bool:
        try:
            asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(timeout=timeout_s)
        except (concurrent.futures.TimeoutError, RuntimeError):
            return False
        return True

    return ping
