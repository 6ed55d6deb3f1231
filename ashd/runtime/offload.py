"""The one place where actor futures and blocking calls meet the IOLoop.

``await future`` on a pykka future would block the event loop (it calls ``get()``), so asks
are resolved on a small thread pool and handed back to the loop with
``call_soon_threadsafe`` (what ``run_in_executor`` does). Store calls go through
:class:`Offload` the same way: reads on a pool, writes on one thread, in order.

An ask whose caller stops waiting (its timeout, or its task cancelled) may still be answered
by the actor: a reply that hands something out (a turn grant) would then be held by nobody.
``ask(..., on_late=...)`` gives such a late reply to ``on_late`` (on the loop), which gives it
back. Replies of the session actors, their supervisor and the pool call back when set
(``ashd/actors/answers.py``): no thread waits for them.

Writes at once (SQLite, :meth:`Offload.allow_writes_at_once`): a brief write that cannot wait
(a turn's group commit) runs on the loop itself when nothing is queued for the writer thread
and it is idle, saving two thread hand-offs per commit. Writes still happen one at a time and
in the order they were asked for: the loop writes only while holding the writer's lock with
nothing queued, and a write queued meanwhile waits for that lock.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import pykka

from ashd.actors.answers import AnsweredFuture
from ashd.errors import Unavailable

T = TypeVar("T")

log = logging.getLogger(__name__)

DEFAULT_ASK_TIMEOUT_S = 30.0
CHECKPOINT_EVERY = 200  # writes at once between two checkpoints queued for the writer thread
LATE_WINDOW_S = 300.0  # how much longer a compensated ask waits for a reply nobody awaits any more


class Offload:
    def __init__(self, readers: int = 8) -> None:
        self._asks = ThreadPoolExecutor(max_workers=16, thread_name_prefix="ashd-ask")
        self._reads = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="ashd-read")
        self._writes = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ashd-write")
        self._writing = threading.Lock()  # held by each write, on the writer thread or at once
        self._counting = threading.Lock()
        self._queued = 0  # writes submitted to the writer thread and not yet finished
        self._checkpoint: Callable[[], None] | None = None  # set: writes at once are allowed
        self._at_once = 0  # writes at once since the last checkpoint was queued

    async def ask(self, future: pykka.Future[T], timeout: float = DEFAULT_ASK_TIMEOUT_S,
                  on_late: Callable[[T], None] | None = None) -> T:
        """Wait for an actor's reply without blocking the loop; re-raises its exception.

        An actor that is gone (ashd stopping) or silent past ``timeout`` becomes Unavailable.
        With ``on_late``, a reply that arrives after the caller gave up (timeout or
        cancellation) is passed to it on the loop thread.

        A reply that calls back (:class:`~ashd.actors.answers.AnsweredFuture`) wakes the loop
        from the actor's thread; any other is waited for on a thread of the ask pool.
        """
        if not isinstance(future, AnsweredFuture) or not future.calls_back:
            return await self._ask_on_thread(future, timeout, on_late)
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[None] = loop.create_future()
        future.add_done_callback(lambda: _on_loop(loop, _settle, woken))
        try:
            await asyncio.wait_for(woken, timeout)
            return future.get(timeout=0)
        except pykka.ActorDeadError:
            raise Unavailable("ashd is stopping or restarting this component; retry shortly") from None
        except (TimeoutError, asyncio.CancelledError) as exc:
            if on_late is not None:
                future.add_done_callback(lambda: _on_loop(loop, _hand_back, lambda: future.get(timeout=0), on_late))
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise Unavailable(f"no answer within {timeout:.0f}s; the server is overloaded, retry shortly") from None

    async def _ask_on_thread(self, future: pykka.Future[T], timeout: float,
                             on_late: Callable[[T], None] | None) -> T:
        loop = asyncio.get_running_loop()
        waits = timeout + LATE_WINDOW_S if on_late is not None else timeout
        job = loop.run_in_executor(self._asks, lambda: future.get(timeout=waits))
        try:
            if on_late is None:
                return await job
            return await asyncio.wait_for(asyncio.shield(job), timeout)
        except pykka.ActorDeadError:
            raise Unavailable("ashd is stopping or restarting this component; retry shortly") from None
        except (pykka.Timeout, TimeoutError):
            if on_late is not None:
                job.add_done_callback(lambda done: _hand_back(done.result, on_late))
            raise Unavailable(f"no answer within {timeout:.0f}s; the server is overloaded, retry shortly") from None
        except asyncio.CancelledError:
            if on_late is not None:
                job.add_done_callback(lambda done: _hand_back(done.result, on_late))
            raise

    def write_soon(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Queue a write on the single writer thread without waiting for it (any thread)."""
        with self._counting:
            self._queued += 1
        try:
            future = self._writes.submit(self._write_queued, fn, args)
        except BaseException:
            self._unqueue()
            raise
        future.add_done_callback(self._unqueue)  # run, failed, or cancelled before it ran
        return future

    def _write_queued(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        with self._writing:
            return fn(*args)

    def _unqueue(self, _: object = None) -> None:
        with self._counting:
            self._queued -= 1

    def allow_writes_at_once(self, checkpoint: Callable[[], None]) -> None:
        """Let :meth:`write_at_once` write on the loop (SQLite, which takes one writer at a
        time and commits in microseconds). ``checkpoint`` is queued for the writer thread after
        every :data:`CHECKPOINT_EVERY` of them (their connection leaves the WAL to it)."""
        self._checkpoint = checkpoint

    def write_at_once(self, write: Callable[[], bool]) -> bool:
        """Run ``write`` here (the loop), in order with every queued write, if writes at once
        are allowed, nothing is queued for the writer thread and it is idle. ``write`` returns
        False when it could not write without waiting; so does this when it did not run, and
        the caller then queues the write (:meth:`write`). Raises what ``write`` raises."""
        if self._checkpoint is None or not self._writing.acquire(blocking=False):
            return False
        try:
            with self._counting:
                if self._queued:
                    return False
            if not write():
                return False
        finally:
            self._writing.release()
        self._at_once += 1
        if self._at_once >= CHECKPOINT_EVERY:
            self._at_once = 0
            self.write_soon(self._checkpoint).add_done_callback(_log_failure)
        return True

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._reads, lambda: fn(*args))

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a write on the single writer thread: writes commit in submission order."""
        return await asyncio.wrap_future(self.write_soon(fn, *args))

    def shutdown(self) -> None:
        for pool in (self._asks, self._reads, self._writes):
            pool.shutdown(wait=True, cancel_futures=False)


def _on_loop(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    """From an actor's thread: run ``fn(*args)`` on the loop (never blocks); nothing once the
    loop is closed (ashd stopping: nobody waits any more)."""
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:
        pass


def _log_failure(future: Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("a write nobody waits for failed: %s", future.exception())


def _settle(woken: asyncio.Future[None]) -> None:
    if not woken.done():  # a caller that gave up cancelled it
        woken.set_result(None)


def _hand_back(reply: Callable[[], T], on_late: Callable[[T], None]) -> None:
    """A reply came after its caller gave up (loop thread): give it to ``on_late``. A late
    failure (the actor raised, or stayed silent) handed nothing out: nothing to give back."""
    try:
        value = reply()
    except (Exception, asyncio.CancelledError):
        return
    log.warning("an actor answered after its caller gave up; compensating")
    try:
        on_late(value)
    except Exception:  # boundary: a compensation must never take the loop down
        log.exception("compensating a late actor reply failed")
