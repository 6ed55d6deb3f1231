"""Timers for actors: one thread runs every scheduled callback at its time.

An actor must never sleep on its mailbox thread (a restart backoff, an idle timeout): it
schedules a callback here instead, which only *tells* the actor (a quick, non-blocking
call). One thread serves every session, so waiting costs no thread per session.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Timer:
    """A scheduled callback; :meth:`cancel` before it runs and it never does."""

    def __init__(self, when: float, fn: Callable[[], object]) -> None:
        self.when = when
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Timers:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()
        self._changed = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="ashd-timers", daemon=True)
        self._thread.start()

    def call_later(self, delay_s: float, fn: Callable[[], object]) -> Timer:
        """Run ``fn`` on the timer thread after ``delay_s`` seconds. ``fn`` must not block."""
        timer = Timer(self._clock() + max(0.0, delay_s), fn)
        with self._changed:
            heapq.heappush(self._heap, (timer.when, next(self._order), timer))
            self._changed.notify()
        return timer

    def stop(self) -> None:
        """Drop what is still scheduled and end the thread."""
        with self._changed:
            self._stopped = True
            self._heap.clear()
            self._changed.notify()
        self._thread.join(5.0)

    def _run(self) -> None:
        while (timer := self._next()) is not None:
            if timer.cancelled:
                continue
            try:
                timer.fn()
            except Exception:  # boundary: one callback's failure never stops the others
                log.exception("a timer callback failed")

    def _next(self) -> Timer | None:
        """The next due timer, waiting for it; None once stopped."""
        with self._changed:
            while not self._stopped:
                if self._heap and self._heap[0][0] <= self._clock():
                    return heapq.heappop(self._heap)[2]
                wait = self._heap[0][0] - self._clock() if self._heap else None
                self._changed.wait(wait)
            return None
