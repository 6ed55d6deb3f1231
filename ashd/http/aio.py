"""The one place where actor futures and blocking calls meet the IOLoop.

``await future`` on a pykka future would block the event loop (it calls ``get()``), so asks
are resolved on a small thread pool and handed back to the loop with
``call_soon_threadsafe`` (what ``run_in_executor`` does). Store calls from handlers go
through :class:`Offload` the same way: reads on a pool, writes on one thread, in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pykka

from ashd.actors.messages import Pending
from ashd.errors import Unavailable

T = TypeVar("T")

DEFAULT_ASK_TIMEOUT_S = 30.0


class Offload:
    def __init__(self, readers: int = 8) -> None:
        self._asks = ThreadPoolExecutor(max_workers=16, thread_name_prefix="ashd-ask")
        self._reads = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="ashd-read")
        self._writes = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ashd-write")

    async def ask(self, future: pykka.Future[T], timeout: float = DEFAULT_ASK_TIMEOUT_S) -> T:
        """Wait for an actor's reply without blocking the loop; re-raises its exception.

        An actor that is gone (ashd stopping) or silent past ``timeout`` becomes Unavailable.
        """
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._asks, lambda: future.get(timeout=timeout))
        except pykka.ActorDeadError:
            raise Unavailable("ashd is stopping or restarting this component; retry shortly") from None
        except pykka.Timeout:
            raise Unavailable(f"no answer within {timeout:.0f}s; the server is overloaded, retry shortly") from None

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._reads, lambda: fn(*args))

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a write on the single writer thread: writes commit in submission order."""
        return await asyncio.get_running_loop().run_in_executor(self._writes, lambda: fn(*args))

    async def ask_settled(self, call: Callable[[], pykka.Future[T | Pending]],
                          timeout: float = DEFAULT_ASK_TIMEOUT_S) -> T:
        """Ask ``call()``; while the actor answers Pending (a sandbox start or a snapshot runs
        off its thread), await its ``until`` without blocking the loop and ask again. The
        whole exchange gets ``timeout``; past it, Unavailable (as :meth:`ask`)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            reply = await self.ask(call(), timeout=max(deadline - loop.time(), 1.0))
            if not isinstance(reply, Pending):
                return reply
            try:
                # shield: a waiter that gives up must not cancel a future other callers share.
                await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(reply.until)),
                                       max(deadline - loop.time(), 0.0))
            except TimeoutError:
                raise Unavailable(f"no answer within {timeout:.0f}s; the server is overloaded, retry shortly") from None

    def shutdown(self) -> None:
        for pool in (self._asks, self._reads, self._writes):
            pool.shutdown(wait=True, cancel_futures=False)
