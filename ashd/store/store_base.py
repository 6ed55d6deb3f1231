"""``StoreBase``: what every part of :class:`~ashd.store.store.Store` stands on: the engine,
the single writer's raw connection, the log sequences held in memory, and the transactions
(read, write, and appends to a session's numbered logs, waiting or at once).

Errors are translated (``translate.py``): StoreUnavailable, Conflict, StoreError.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import migrate, raw_writes
from .coordinators import CoordinatorLock
from .engine import WRITE_OPTION, create_engine_for, mask_url
from .errors import Conflict
from .leases import OnAnswer, OnAsked, OnLost, SessionLeases
from .notify import OnRows, StreamListener
from .sequences import LogSequences
from .timestamps import Clock, utc_now
from .translate import translated_errors
from .usage_queue import Row as UsageRow
from .usage_queue import UsageQueue

P = ParamSpec("P")
T = TypeVar("T")
# Characters of rows (1 MiB of UTF-8 at most) a write at once takes; more go to the writer thread.
AT_ONCE_MAX_CHARS = 256 * 1024


class StoreBase:
    """The database, its connections and its transactions (see module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        connect_retries: int = 5,
        retry_initial_delay: float = 0.5,
        retry_max_delay: float = 8.0,
        clock: Clock = utc_now,
    ) -> None:
        """Open the database (blocking; Postgres is retried with backoff).

        Raises StoreUnavailable naming the masked URL if it cannot be reached, and
        StoreError for unsupported URLs. Does not migrate: call ``migrate()``.
        """
        self._engine = create_engine_for(
            url, retries=connect_retries, initial_delay=retry_initial_delay,
            max_delay=retry_max_delay,
        )
        self._url_masked = mask_url(self._engine.url)  # named by every write's errors
        self._clock = clock
        self._seqs = LogSequences()
        self._raw = raw_writes.RawWrites(self._engine)
        self._usage = UsageQueue()  # written with a turn's last commit (usage_queue.py)

    @property
    def url_masked(self) -> str:
        """The database URL with the password replaced by ``***``."""
        return self._url_masked

    @property
    def dialect(self) -> Literal["sqlite", "postgresql"]:
        return "sqlite" if self._engine.dialect.name == "sqlite" else "postgresql"

    def migrate(self) -> None:
        """Bring the schema to the newest revision; idempotent, safe across processes."""
        with translated_errors(self.url_masked):
            migrate.upgrade(self._engine)

    def ping(self) -> bool:
        """True if the database answers a trivial query; False (logged by the caller) if not."""
        try:
            with self._engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError:
            return False
        return True

    def stream_listener(self, on_rows: OnRows, on_listening: Callable[[], None]) -> StreamListener | None:
        """The fan-out's listener over this database (not started; see ``notify.py``), or None
        on SQLite, where one daemon owns the database and nothing needs to fan out."""
        params = self._own_connection_params()
        return StreamListener(params, on_rows, on_listening) if params is not None else None

    def coordinator_lock(self, coordinator_id: str) -> CoordinatorLock | None:
        """This daemon's liveness lock over this database (not taken; see ``coordinators.py``),
        or None on SQLite, where one daemon owns the database."""
        params = self._own_connection_params()
        return CoordinatorLock(params, coordinator_id) if params is not None else None

    def session_leases(self, name: str, on_asked: OnAsked, on_answer: OnAnswer,
                       on_lost: OnLost) -> SessionLeases | None:
        """The coordinator's session leases over this database (not started; see ``leases.py``),
        or None on SQLite, where one daemon owns every session."""
        params = self._own_connection_params()
        return SessionLeases(params, name, on_asked, on_answer, on_lost) if params is not None else None

    def _own_connection_params(self) -> MutableMapping[str, Any] | None:
        """psycopg's connect arguments for a connection of its own (a listener, a lock holder),
        outside the pool; None on SQLite."""
        if self.dialect != "postgresql":
            return None
        _, params = self._engine.dialect.create_connect_args(self._engine.url)
        params.pop("context", None)  # SQLAlchemy's adapters: these connections read no rows
        return params

    def close(self) -> None:
        """Release pooled connections. Call once, after all other calls returned."""
        self._raw.close()
        self._engine.dispose()

    # -- transactions ---------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with translated_errors(self.url_masked), self._engine.begin() as conn:
            yield conn

    def _appending(self, tenant_id: str, session_id: str, write: Callable[[Any], T], *, raw: bool = False) -> T:
        """Run ``write`` (appends to the session's numbered logs) in one write transaction,
        holding the sequences' lock: given a Connection, or (``raw``) a driver cursor of
        ``raw_writes``. Sequences another process took meanwhile make it a Conflict: the stored
        maximum is read again and ``write`` retried once. Any failure forgets what the
        rolled-back transaction had taken (no gaps)."""
        for attempt in (1, 2):
            with self._seqs.lock:
                try:
                    with self._raw_write() if raw else self._write() as conn:
                        return write(conn)
                except Conflict:
                    self._seqs.forget(tenant_id, session_id)
                    if attempt == 2:
                        raise
                except BaseException:
                    self._seqs.forget(tenant_id, session_id)
                    raise
        raise AssertionError("unreachable")

    def _appending_at_once(self, tenant_id: str, session_id: str, size: int, write: Callable[[Any], None]) -> bool:
        """:meth:`_appending` (raw) without waiting: False, with nothing written, instead of
        waiting for the sequences' lock or SQLite's write lock, or of retrying after another
        process took sequences (the caller's :meth:`_appending` then reads them again); and for
        rows of more than :data:`AT_ONCE_MAX_CHARS` (``size``), whose insert would hold the
        caller (the event loop, every session's) for long: an agent's output decides it."""
        if size > AT_ONCE_MAX_CHARS or not self._raw.sqlite or not self._seqs.lock.acquire(blocking=False):
            return False
        try:
            with translated_errors(self.url_masked), self._raw.transaction_at_once() as cursor:
                write(cursor)
            return True
        except raw_writes.WouldWait:
            return False
        except Conflict:
            self._seqs.forget(tenant_id, session_id)
            return False
        except BaseException:
            self._seqs.forget(tenant_id, session_id)
            raise
        finally:
            self._seqs.lock.release()

    @contextmanager
    def _taking_usage(self, take: bool = True) -> Iterator[list[UsageRow]]:
        """The queued usage rows (none unless ``take``), for the caller's transaction to insert;
        put back if it raises."""
        rows = self._usage.take() if take else []
        try:
            yield rows
        except BaseException:
            self._usage.put_back(rows)
            raise

    @contextmanager
    def _raw_write(self) -> Iterator[raw_writes.Cursor]:
        with translated_errors(self.url_masked), self._raw.transaction() as cursor:
            yield cursor

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with translated_errors(self.url_masked), self._engine.connect() as conn:
            conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                yield conn

    # -- query modules used directly (e.g. ashd/store/eval_queries.py) -----------------

    def now(self) -> str:
        """The store's clock: the timestamp it would write now."""
        return self._clock()

    def read_with(self, query: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a query function of a ``*_queries`` module in one read transaction."""
        with self._read() as conn:
            return query(conn, *args, **kwargs)

    def write_with(self, query: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a query function of a ``*_queries`` module in one write transaction."""
        with self._write() as conn:
            return query(conn, *args, **kwargs)
