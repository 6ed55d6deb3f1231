"""Postgres ``LISTEN/NOTIFY`` for committed stream events: the fan-out across daemons.

The transaction that stores a batch of a session's stream events (``raw_writes.append_log``)
NOTIFYs :data:`STREAM_CHANNEL` with ``"<session id> <highest event id>"``. Postgres delivers
a notification only when its transaction commits (and never if it rolls back), so a listener
never hears of rows it cannot read yet.

:class:`StreamListener` is the one listening connection of a daemon: an autocommit psycopg
connection on a thread of its own. It passes each notification to ``on_rows(session_id, seq)``
(on its thread: the caller hands it to its loop). A lost connection is opened again with
backoff; each time it LISTENs (the first time too), ``on_listening()`` is called, so the caller
re-reads whatever a notification may have been lost for while it was away.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

import psycopg

from .own_connection import KEEPALIVES, run_reconnecting

log = logging.getLogger(__name__)

STREAM_CHANNEL = "ashd_stream_events"
WAIT_S = 1.0  # how long one wait for notifications lasts before the stop flag is looked at

OnRows = Callable[[str, int], None]


def parse_payload(payload: str) -> tuple[str, int] | None:
    """(session id, event id) of a notification, or None for a payload not of ours."""
    session_id, _, seq = payload.partition(" ")
    try:
        return (session_id, int(seq)) if session_id else None
    except ValueError:
        return None


class StreamListener:
    def __init__(self, connect_params: Mapping[str, Any], on_rows: OnRows, on_listening: Callable[[], None]) -> None:
        """``connect_params``: psycopg's keyword arguments for the database (no password logged)."""
        self._params = {**KEEPALIVES, **connect_params}
        self._on_rows = on_rows
        self._on_listening = on_listening
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ashd-listen", daemon=True)
        self.backend_pid: int | None = None  # the listening connection's server process, while connected
        self.connects = 0  # how many times it has LISTENed (1 + reconnects)

    def start(self) -> None:
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = WAIT_S + 2) -> None:
        """Stop listening (blocking, at most about ``timeout``)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        run_reconnecting(self._stop, self._listen, log, "stream fan-out: the listening connection")

    def _listen(self) -> None:
        """One connection's life: LISTEN, tell ``on_listening``, dispatch until stopped or lost."""
        try:
            self._listen_once()
        finally:
            self.backend_pid = None

    def _listen_once(self) -> None:
        with psycopg.connect(**self._params, autocommit=True) as conn:
            conn.execute(f"LISTEN {STREAM_CHANNEL}")
            self.backend_pid = conn.info.backend_pid
            self.connects += 1
            if self.connects > 1:
                log.info("stream fan-out: listening again (connection %d)", self.connects)
            self._on_listening()
            while not self._stop.is_set():
                for note in conn.notifies(timeout=WAIT_S):
                    parsed = parse_payload(note.payload) if note.channel == STREAM_CHANNEL else None
                    if parsed is not None:
                        self._on_rows(*parsed)
