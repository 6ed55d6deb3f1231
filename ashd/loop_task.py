"""LoopTask: an IOLoop service (``ashd.listener.LoopService``) whose work is one task."""

from __future__ import annotations

import asyncio
import contextlib


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
