"""The proxies' own asyncio loop, on its own thread.

Model and egress traffic never touches the HTTP IOLoop: a slow upstream cannot delay API
requests, and the launcher (on actor threads) hands listening sockets over with
:meth:`serve`, which blocks the caller until the server is accepting.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
CALL_TIMEOUT_S = 10.0


class ProxyLoop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="proxy-loop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro: Awaitable[Any]) -> Any:
        """Run a coroutine on the proxy loop and wait for its result (any thread but this one)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=CALL_TIMEOUT_S)  # type: ignore[arg-type]

    def answers(self, timeout_s: float) -> bool:
        """True if the loop runs a no-op within ``timeout_s`` (any thread but this one)."""
        try:
            asyncio.run_coroutine_threadsafe(asyncio.sleep(0), self.loop).result(timeout=timeout_s)
        except (concurrent.futures.TimeoutError, RuntimeError):
            return False
        return True

    def serve(self, sock: socket.socket, handler: Handler) -> asyncio.Server:
        """Start accepting on an already-listening socket. Blocks until it is serving."""

        async def start() -> asyncio.Server:
            return await asyncio.start_server(handler, sock=sock, limit=256 * 1024)

        server: asyncio.Server = self.call(start())
        return server

    def close_server(self, server: asyncio.Server) -> None:
        """Stop accepting and close the listening socket (open connections stay). Never raises."""
        self.run_quietly(server.close)

    def run_quietly(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the loop thread and wait for it (any thread but this one). Never raises."""

        if self.loop.is_closed():
            return

        async def run() -> None:
            fn()

        try:
            self.call(run())
        except Exception:  # noqa: S110 - the loop may already be stopped at shutdown
            pass

    def stop(self) -> None:
        """Stop the loop and close it (connections still open are dropped). Idempotent."""
        if self.loop.is_closed():
            return

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            self.call(cancel_all())
        except Exception:  # noqa: S110 - best effort; the loop is stopped below regardless
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self.loop.close()
