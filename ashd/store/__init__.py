"""ashd's persistence layer: SQLAlchemy Core over SQLite (WAL) or Postgres.

Use :class:`Store`; call ``Store(url).migrate()`` once at start-up. See ``store.py``
for the thread-safety and error contract.
"""

from .errors import Conflict, StoreError, StoreUnavailable
from .rows import AgentRow, ApiKeyRow, EventRow, MessageRow, RunnerRow, SandboxRow, SessionRow
from .store import UNSET, Store
from .stream_queries import StreamEventRow
from .timestamps import format_utc, utc_now

__all__ = [
    "UNSET",
    "AgentRow",
    "ApiKeyRow",
    "Conflict",
    "EventRow",
    "MessageRow",
    "RunnerRow",
    "SandboxRow",
    "SessionRow",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "StreamEventRow",
    "format_utc",
    "utc_now",
]
