"""LoopTask: an IOLoop service (``ashd.listener.LoopService``) whose work is one task;
PeriodicTask: one whose task makes a pass every few seconds."""

from __future__ import annotations

import asyncio
import contextlib
import logging

log = logging.getLogger(__name__)


class LoopTask:
    """A loop service whose work is one task, :meth:`run`: started with the service,
    cancelled (and waited for) when it stops. Loop thread only."""

    _task: asyncio.Future[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self.run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run(self) -> None:
        raise NotImplementedError


class PeriodicTask(LoopTask):
    """A :class:`LoopTask` that makes a pass (:meth:`sweep`) every :meth:`period` seconds; a
    pass that fails is logged (``failure``) and the next one tries again (the database may be
    back)."""

    failure = "periodic pass failed"

    def period(self) -> float:
        raise NotImplementedError

    async def sweep(self) -> object:
        raise NotImplementedError

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.period())
            try:
                await self.sweep()
            except Exception:  # boundary: the next pass tries again
                log.exception("%s; next pass in a few seconds", self.failure)
