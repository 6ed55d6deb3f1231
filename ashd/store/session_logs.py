"""``SessionLogStore``: a session's numbered logs: its messages, its events, the SSE frames
of its stream (replayed by id) and the CLI's transcripts, each appended with consecutive
sequences held in memory (``sequences.py``), waiting or at once (the event loop's writes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy.engine import Connection

from . import log_queries, raw_writes, stream_queries
from .rows import EventRow, MessageRow
from .store_base import StoreBase
from .stream_queries import StreamEventRow
from .translate import translated_errors
from .usage_queue import Row as UsageRow


class SessionLogStore(StoreBase):
    """Appends to and reads of a session's logs (see module docstring)."""

    # -- messages and events ------------------------------------------------------

    def append_message(self, tenant_id: str, session_id: str, role: str, content: str) -> MessageRow:
        """Append with the next sequence (1, 2, ...). StoreError if no such session."""
        now = self._clock()
        rows = self._appending(tenant_id, session_id, lambda conn: log_queries.append_messages(
            conn, self._seqs, tenant_id, session_id, [(role, content)], now))
        return rows[0]

    def list_messages(
        self, tenant_id: str, session_id: str, limit: int = 100, after: int = 0
    ) -> list[MessageRow]:
        """Up to ``limit`` messages with sequence > ``after``, ascending."""
        with self._read() as conn:
            return log_queries.list_messages(conn, tenant_id, session_id, limit, after)

    def append_event(self, tenant_id: str, session_id: str, type: str, data: str) -> EventRow:
        """Append with the next sequence (1, 2, ...). StoreError if no such session."""
        return self.append_events(tenant_id, session_id, [(type, data)])[0]

    def append_events(
        self, tenant_id: str, session_id: str, items: Sequence[tuple[str, str]]
    ) -> list[EventRow]:
        """Append (type, data) pairs with consecutive sequences, all or none."""
        now = self._clock()
        return self._appending(tenant_id, session_id, lambda conn: log_queries.append_events(
            conn, self._seqs, tenant_id, session_id, items, now))

    def append_log(self, tenant_id: str, session_id: str, messages: Sequence[tuple[str, str]],
                   events: Sequence[tuple[str, str]], stream: Sequence[tuple[int, str, str]] = (), *,
                   usage: bool = False) -> None:
        """Append (role, content) messages, (type, data) events and (seq, event, data) SSE
        frames in one transaction; with ``usage``, every queued usage row too (a turn's last
        commit, which holds its ``done``: ``queue_usage``).

        The group commit of a turn's writer: all rows or none, sequences consecutive.
        """
        if not messages and not events and not stream:
            return
        now = self._clock()
        with self._taking_usage(usage) as rows:
            self._appending(tenant_id, session_id, self._log_writer(
                tenant_id, session_id, messages, events, stream, now, rows), raw=True)

    def append_log_at_once(self, tenant_id: str, session_id: str, messages: Sequence[tuple[str, str]],
                           events: Sequence[tuple[str, str]], stream: Sequence[tuple[int, str, str]] = (), *,
                           usage: bool = False) -> bool:
        """:meth:`append_log` for a caller that must not wait (the event loop): True when the
        rows are committed; False, with nothing written, when that would mean waiting (another
        thread holds the sequences' lock, another connection SQLite's write lock, or another
        process took sequences meanwhile, or rows over :data:`AT_ONCE_MAX_CHARS`), and always on
        Postgres. On False the caller uses :meth:`append_log`. Raises what :meth:`append_log`
        raises for a failed write."""
        size = (sum(len(content) for _, content in messages) + sum(len(data) for _, data in events)
                + sum(len(data) for _, _, data in stream))
        now = self._clock()
        with self._taking_usage(usage) as rows:
            if self._appending_at_once(tenant_id, session_id, size, self._log_writer(
                    tenant_id, session_id, messages, events, stream, now, rows)):
                return True
            self._usage.put_back(rows)
            return False

    def _log_writer(self, tenant_id: str, session_id: str, messages: Sequence[tuple[str, str]],
                    events: Sequence[tuple[str, str]], stream: Sequence[tuple[int, str, str]], now: str,
                    usage: Sequence[UsageRow]) -> Callable[[raw_writes.Cursor], None]:
        """What one log append writes inside its transaction: the rows, then ``usage``."""
        def write(cursor: raw_writes.Cursor) -> None:
            raw_writes.append_log(self._raw, cursor, self._seqs, tenant_id, session_id, messages, events, stream, now)
            raw_writes.insert_usage(self._raw, cursor, usage)
        return write

    def checkpoint(self) -> None:
        """SQLite: copy the WAL into the database file as far as no reader needs it (the
        writes at once leave that to the writer thread). Nothing on Postgres."""
        with translated_errors(self.url_masked):
            self._raw.checkpoint()

    # -- SSE stream log and transcripts (issue #3) ----------------------------------

    def list_stream_events(self, tenant_id: str, session_id: str, after: int = 0,
                           limit: int = 10_000) -> list[StreamEventRow]:
        with self._read() as conn:
            return stream_queries.list_stream(conn, tenant_id, session_id, after, limit)

    def last_stream_event(self, tenant_id: str, session_id: str) -> StreamEventRow | None:
        with self._read() as conn:
            return stream_queries.last_stream(conn, tenant_id, session_id)

    def append_transcript(self, tenant_id: str, session_id: str, subpath: str, entries: Sequence[str]) -> None:
        """Append CLI transcript lines, numbered per (session, subpath). StoreError if the
        tenant has no such session."""
        now = self._clock()
        self._appending(tenant_id, session_id, lambda cursor: raw_writes.append_transcript(
            self._raw, cursor, self._seqs, tenant_id, session_id, subpath, entries, now), raw=True)

    def append_transcript_at_once(self, tenant_id: str, session_id: str, subpath: str,
                                  entries: Sequence[str]) -> bool:
        """:meth:`append_transcript` for a caller that must not wait: True when committed, False
        (nothing written) as :meth:`append_log_at_once` says."""
        now = self._clock()
        size = sum(len(entry) for entry in entries)
        return self._appending_at_once(tenant_id, session_id, size, lambda cursor: raw_writes.append_transcript(
            self._raw, cursor, self._seqs, tenant_id, session_id, subpath, entries, now))

    def load_transcript(self, tenant_id: str, session_id: str, subpath: str = "") -> list[str]:
        with self._read() as conn:
            return stream_queries.load_transcript(conn, tenant_id, session_id, subpath)

    def transcript_subpaths(self, tenant_id: str, session_id: str) -> list[str]:
        with self._read() as conn:
            return stream_queries.transcript_subpaths(conn, tenant_id, session_id)

    def copy_messages(self, tenant_id: str, source: str, target: str) -> int:
        """Append every message of ``source`` to ``target`` (fork), in order. Returns the count."""
        now = self._clock()

        def write(conn: Connection) -> int:
            rows = log_queries.list_messages(conn, tenant_id, source, 1_000_000, 0)
            items = [(r.role, r.content) for r in rows]
            if items:
                log_queries.append_messages(conn, self._seqs, tenant_id, target, items, now)
            return len(items)

        return self._appending(tenant_id, target, write)

    def copy_transcript(self, tenant_id: str, source: str, target: str) -> int:
        now = self._clock()
        with self._seqs.lock:
            self._seqs.forget(tenant_id, target)  # its transcripts' next sequences are read again
            with self._write() as conn:
                return stream_queries.copy_transcript(conn, tenant_id, source, target, now)

    def list_events(
        self,
        tenant_id: str,
        session_id: str,
        limit: int = 200,
        after: int = 0,
        type: str | None = None,
    ) -> list[EventRow]:
        """Up to ``limit`` events with sequence > ``after`` (of ``type``), ascending."""
        with self._read() as conn:
            return log_queries.list_events(conn, tenant_id, session_id, limit, after, type)
