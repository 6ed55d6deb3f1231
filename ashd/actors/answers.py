"""Replies that wake their asker: a pykka future that calls back once it is answered.

A plain pykka future can only be waited on (``get()`` blocks), so an asker on the IOLoop had
to park a thread on it (``Offload.ask``): each ask then cost two thread hand-offs, actor ->
waiting thread -> loop, where each one waits for a core on a busy host. An actor whose
``_create_future`` makes an :class:`AnsweredFuture` lets the asker register a callback that
runs on the actor's thread as soon as the reply is set (it must not block: the runtime's only
schedules the loop with ``call_soon_threadsafe``).
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

import pykka

log = logging.getLogger(__name__)


class AnsweredFuture(pykka.ThreadingFuture[Any]):
    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._answered = False
        self._callbacks: list[Callable[[], None]] = []
        self._derived = False  # made by map/filter/join: its value comes from a get hook, never set

    @property
    def calls_back(self) -> bool:
        """Whether :meth:`add_done_callback` works here (an actor's reply, not a derived future)."""
        return not self._derived

    def set_get_hook(self, func: Any) -> None:
        self._derived = True
        super().set_get_hook(func)

    def add_done_callback(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` once the reply is set: on the answering thread, or at once (on this
        one) if it is set already. ``fn`` must not block."""
        with self._lock:
            if not self._answered:
                self._callbacks.append(fn)
                return
        fn()

    def set(self, value: Any | None = None) -> None:
        super().set(value)
        self._fire()

    def set_exception(self, exc_info: Any = None) -> None:
        super().set_exception(exc_info if exc_info is not None else sys.exc_info())
        self._fire()

    def _fire(self) -> None:
        with self._lock:
            self._answered = True
            callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            try:
                fn()
            except Exception:  # boundary: a caller's callback must not fail the actor's reply
                log.exception("a reply's callback failed")


def answered_future() -> pykka.Future[Any]:
    """``_create_future`` for actors whose replies are awaited on the IOLoop."""
    return AnsweredFuture()
