"""``QueueStore``: the prompt queue's rows (``queue_queries.py``): added, read, claimed by
a worker, finished, retried or cancelled. (The queue worker prunes finished ones with
``write_with(queue_queries.prune_finished, ...)``.)"""

from __future__ import annotations

from . import queue_queries
from .store_base import StoreBase


class QueueStore(StoreBase):
    """The prompt queue (see module docstring)."""

    def enqueue(self, item: queue_queries.NewItem) -> queue_queries.QueueItemRow:
        with self._write() as conn:
            return queue_queries.add(conn, item, self._clock())

    def get_queue_item(self, tenant_id: str, item_id: str) -> queue_queries.QueueItemRow | None:
        with self._read() as conn:
            return queue_queries.get(conn, tenant_id, item_id)

    def list_queue_items(self, tenant_id: str, status: str | None = None,
                         limit: int = 50) -> list[queue_queries.QueueItemRow]:
        """Highest priority first, then oldest."""
        with self._read() as conn:
            return queue_queries.list_for(conn, tenant_id, status, limit)

    def has_queued_prompts(self, tenant_id: str, session_id: str) -> bool:
        """Whether the queue holds a pending or processing prompt for this session (never park it)."""
        with self._read() as conn:
            return queue_queries.has_waiting(conn, tenant_id, session_id)

    def queue_stats(self, tenant_id: str) -> dict[str, int]:
        """Item counts by status (every status present, 0 if none)."""
        with self._read() as conn:
            return queue_queries.stats(conn, tenant_id)

    def cancel_queue_item(self, tenant_id: str, item_id: str) -> bool:
        """pending -> cancelled; False if not pending or not found."""
        with self._write() as conn:
            return queue_queries.cancel(conn, tenant_id, item_id, self._clock())

    def claim_queue_item(self, claimed_by: str | None = None) -> queue_queries.QueueItemRow | None:
        """Internal (all tenants): atomically take the next due pending item, for the
        coordinator ``claimed_by`` (see ``coordinators.py``)."""
        with self._write() as conn:
            return queue_queries.claim(conn, self._clock(), claimed_by)

    def queue_item_due(self) -> bool:
        """Internal (all tenants): whether any pending item is due; a read, no lock taken."""
        with self._read() as conn:
            return queue_queries.any_due(conn, self._clock())

    def finish_queue_item(self, item_id: str, status: str, *, error: str | None = None,
                          session_id: str | None = None, claimed_by: str | None = None) -> bool:
        """Internal: processing -> completed | failed (only while ``claimed_by`` holds it, if given)."""
        with self._write() as conn:
            return queue_queries.finish(conn, item_id, status, self._clock(), error=error, session_id=session_id,
                                        claimed_by=claimed_by)

    def retry_queue_item(self, item_id: str, retry_count: int, retry_after: str, error: str,
                         session_id: str | None = None, claimed_by: str | None = None) -> bool:
        """Internal: processing -> pending, due again at ``retry_after`` (only while
        ``claimed_by`` holds it, if given)."""
        with self._write() as conn:
            return queue_queries.retry_later(conn, item_id, retry_count, retry_after, error, session_id, claimed_by)

    def set_queue_item_session(self, item_id: str, session_id: str) -> None:
        """Internal: remember the session a queued prompt runs in (retries reuse it)."""
        with self._write() as conn:
            queue_queries.set_session(conn, item_id, session_id)

    def requeue_processing_items(self) -> int:
        """Internal, at start-up: items left ``processing`` go back to ``pending``."""
        with self._write() as conn:
            return queue_queries.requeue_processing(conn)
