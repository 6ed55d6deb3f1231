"""Fan-out of live events across daemons that share one Postgres database.

A turn runs in one daemon, which follows it in memory; any other daemon serves the session's
stream from the stored log. The store NOTIFYs at each commit of a session's stream events
(:mod:`ashd.store.notify`); this daemon's one :class:`~ashd.store.notify.StreamListener` hears
it on its own thread, and :class:`StreamFanout` rings the session's :class:`SessionBell` on the
loop, waking the streams that wait for that session's next rows (they read them from the
store after their last id). Notifications that arrive together are dispatched in one loop
callback; a notification for a session nobody here waits for costs a set lookup.

What a notification may miss is covered twice: when the listener connects again after losing
its connection, every waiting stream is woken to re-read from its last id; and a waiting stream
re-reads anyway after :data:`REREAD_S` without a notification. On SQLite (one daemon per
database) there is no fan-out and nothing changes.
"""

from __future__ import annotations

import asyncio
import threading

from ashd.runtime.following import SessionBell
from ashd.store import Store
from ashd.store.notify import StreamListener

REREAD_S = 5.0  # a waiting stream re-reads the store this often even without a notification


class StreamFanout:
    def __init__(self, loop: asyncio.AbstractEventLoop, reread_s: float = REREAD_S) -> None:
        self.reread_s = reread_s
        self._loop = loop
        self._bell = SessionBell()
        self._lock = threading.Lock()
        self._pending: set[str] = set()  # sessions notified, not yet dispatched (listener -> loop)
        self._everyone = False  # the listener (re)connected: wake every waiting stream
        self._scheduled = False
        self._listener: StreamListener | None = None

    @classmethod
    def start(cls, store: Store, loop: asyncio.AbstractEventLoop, reread_s: float = REREAD_S) -> StreamFanout | None:
        """A fan-out with its listener started, or None on SQLite."""
        fanout = cls(loop, reread_s)
        listener = store.stream_listener(fanout.rows_committed, fanout.listening)
        if listener is None:
            return None
        fanout._listener = listener
        listener.start()
        return fanout

    @property
    def listener(self) -> StreamListener | None:
        return self._listener

    def stop(self) -> None:
        """Stop the listener (blocking, about a second)."""
        if self._listener is not None:
            self._listener.stop()

    # -- the loop's side ---------------------------------------------------

    def next_rows(self, session_id: str) -> asyncio.Future[None]:
        """Resolves when rows of ``session_id`` may have been committed since this call. Take
        it before reading the store; then :meth:`forget` it."""
        return self._bell.next(session_id)

    def forget(self, session_id: str, future: asyncio.Future[None]) -> None:
        self._bell.forget(session_id, future)

    # -- the listener's side (its thread) ----------------------------------

    def rows_committed(self, session_id: str, seq: int) -> None:
        """A batch of ``session_id``'s stream events up to ``seq`` was committed (any daemon)."""
        self._schedule(session_id)

    def listening(self) -> None:
        """The listener LISTENs (again): notifications may have been lost meanwhile."""
        self._schedule(None)

    def _schedule(self, session_id: str | None) -> None:
        """Note ``session_id`` (None: everyone) for the next dispatch; one loop callback at a time."""
        with self._lock:
            if session_id is None:
                self._everyone = True
            else:
                self._pending.add(session_id)
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._dispatch)
        except RuntimeError:  # the loop is closed: ashd is stopping
            pass

    def _dispatch(self) -> None:
        with self._lock:
            pending, everyone = self._pending, self._everyone
            self._pending, self._everyone, self._scheduled = set(), False, False
        if everyone:
            self._bell.ring_all()
            return
        for session_id in pending:
            self._bell.ring(session_id)
