"""Usage rows waiting for a write transaction that happens anyway (``Store.queue_usage``).

The model proxy meters every model call, and the reply it meters ends about when the CLI
streams its first text out. A transaction of its own for the call's seven rows, queued on
the single writer right then, made the turn's commit of that text wait for it and go through
the writer thread instead of committing at once (``ashd/runtime/offload.py``). Queued here,
the rows ride in the last commit of the next turn to end, the one holding its ``done``
(``Store.append_log(..., usage=True)``), a few inserts more in a transaction that happens
anyway and that no client waits on for a first text; the recorder writes what no turn took
within :data:`~ashd.sandbox.recorder.USAGE_WAIT_S` (``Store.write_queued_usage``), and
readers of usage write what is queued first.

A transaction that fails puts the rows it took back. At most :data:`MAX_ROWS` wait (the
database down for long): beyond that the oldest are dropped, with a warning. Thread-safe.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)

MAX_ROWS = 14_000  # 2,000 model calls' rows, a few MB
Row = tuple[Any, ...]  # the values of raw_writes' usage columns


class UsageQueue:
    def __init__(self, max_rows: int = MAX_ROWS) -> None:
        self._lock = threading.Lock()
        self._rows: list[Row] = []
        self._max = max_rows
        self._dropped = 0

    def put(self, rows: Sequence[Row]) -> None:
        with self._lock:
            self._rows.extend(rows)
            self._bound()

    def take(self) -> list[Row]:
        """Every queued row (the queue is empty after)."""
        with self._lock:
            rows, self._rows = self._rows, []
            return rows

    def put_back(self, rows: Sequence[Row]) -> None:
        """Rows a failed transaction took, ahead of those queued since."""
        if rows:
            with self._lock:
                self._rows[:0] = rows
                self._bound()

    def __len__(self) -> int:
        return len(self._rows)

    def _bound(self) -> None:
        over = len(self._rows) - self._max
        if over > 0:
            del self._rows[:over]
            if self._dropped == 0:
                log.warning("usage rows could not be written for long (is the database down?): the oldest are "
                            "dropped beyond %d waiting; this is logged once", self._max)
            self._dropped += over
