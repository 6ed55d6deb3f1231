"""``Store``: the one persistence API the rest of ashd uses.

Every method is synchronous (blocks on database I/O), thread-safe (each call takes a
pooled connection for one short transaction) and returns frozen rows from
``rows.py``. Reads take ``tenant_id`` and never return another tenant's rows, except
the methods documented as internal (all tenants).

Errors: StoreUnavailable (database unreachable or busy), Conflict (duplicate key),
StoreError (anything else the database rejects, unknown session on append).
ValueError for caller mistakes (an id longer than 36 characters, negative paging).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import (
    agent_queries,
    analytics,
    attachment_queries,
    credential_queries,
    key_queries,
    log_queries,
    migrate,
    queue_queries,
    raw_writes,
    sandbox_queries,
    session_queries,
    stream_queries,
    usage,
    version_queries,
)
from .coordinators import CoordinatorLock
from .engine import WRITE_OPTION, create_engine_for, mask_url
from .errors import Conflict
from .leases import OnAnswer, OnAsked, OnLost, SessionLeases
from .notify import OnRows, StreamListener
from .rows import (
    UNSET,
    AgentRow,
    ApiKeyRow,
    EventRow,
    MessageRow,
    SandboxRow,
    SessionRow,
    Unset,
)
from .sequences import LogSequences
from .stream_queries import StreamEventRow
from .timestamps import Clock, utc_now
from .translate import translated_errors

P = ParamSpec("P")
T = TypeVar("T")
# Characters of rows (1 MiB of UTF-8 at most) a write at once takes; more go to the writer thread.
AT_ONCE_MAX_CHARS = 256 * 1024


class Store:
    """Typed access to ashd's tables over SQLite or Postgres (see module docstring)."""

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

    # -- api keys ---------------------------------------------------------------

    def add_api_key(self, tenant_id: str, key_hash: str, label: str, scopes: str = "admin",
                    key_prefix: str | None = None) -> ApiKeyRow:
        """Store a key hash (and the key's first characters) for ``tenant_id``. Raises
        Conflict if the hash exists."""
        with self._write() as conn:
            return key_queries.add(conn, tenant_id, key_hash, label, self._clock(), scopes, key_prefix)

    def find_api_key(self, key_hash: str) -> ApiKeyRow | None:
        """The key with this hash, whatever its tenant (used to authenticate)."""
        with self._read() as conn:
            return key_queries.find(conn, key_hash)

    def set_api_key_scopes(self, key_id: str, scopes: str) -> None:
        """Replace the scopes of key ``key_id`` (the operator's start-up upgrade only)."""
        with self._write() as conn:
            key_queries.set_scopes(conn, key_id, scopes)

    def set_api_key_prefix(self, key_id: str, key_prefix: str) -> None:
        """Record the first characters of key ``key_id`` (the bootstrap key, at start-up)."""
        with self._write() as conn:
            key_queries.set_prefix(conn, key_id, key_prefix)

    def count_api_keys(self, tenant_id: str | None = None) -> int:
        """Number of keys of ``tenant_id``, or of all tenants if None."""
        with self._read() as conn:
            return key_queries.count(conn, tenant_id)

    def list_api_keys(self, tenant_id: str) -> list[ApiKeyRow]:
        """The tenant's keys, oldest first."""
        with self._read() as conn:
            return key_queries.list_for(conn, tenant_id)

    def delete_api_key(self, tenant_id: str, key_id: str, keep_last_admin: bool = False) -> bool:
        """Delete the tenant's key ``key_id``; False if the tenant has no such key. With
        ``keep_last_admin``, raises ``key_queries.LastAdminKey`` (a Conflict) rather than
        delete the tenant's only admin key."""
        with self._write() as conn:
            return key_queries.delete(conn, tenant_id, key_id, keep_last_admin)

    # -- agents -----------------------------------------------------------------

    def upsert_agent(
        self,
        tenant_id: str,
        name: str,
        path: str,
        env: Mapping[str, str],
        config: Mapping[str, Any] | None = None,
    ) -> AgentRow:
        """Insert version 1, or bump the version and replace path/env (config if given).

        Keeps id, created_at and active_version_id. Atomic: concurrent upserts of one
        name each get their own version number.
        """
        with self._write() as conn:
            return agent_queries.upsert(conn, tenant_id, name, path, env, config, self._clock())

    def get_agent(self, tenant_id: str, name: str) -> AgentRow | None:
        with self._read() as conn:
            return agent_queries.get(conn, tenant_id, name)

    def list_agents(self, tenant_id: str) -> list[AgentRow]:
        """The tenant's agents ordered by name."""
        with self._read() as conn:
            return agent_queries.list_for(conn, tenant_id)

    def list_all_agents(self) -> list[AgentRow]:
        """Internal use (boot): the agents of every tenant."""
        with self._read() as conn:
            return agent_queries.list_for(conn, None)

    def set_agent_config(
        self, tenant_id: str, name: str, config: Mapping[str, Any] | None
    ) -> AgentRow | None:
        """Replace the agent's config without bumping its version; None if no agent."""
        with self._write() as conn:
            return agent_queries.set_config(conn, tenant_id, name, config, self._clock())

    def delete_agent(self, tenant_id: str, name: str) -> bool:
        """Delete the agent with its sessions, messages and events; False if absent."""
        with self._write() as conn:
            return agent_queries.delete(conn, tenant_id, name)

    # -- sessions ---------------------------------------------------------------

    def create_session(
        self,
        tenant_id: str,
        session_id: str,
        agent_name: str,
        status: str,
        sandbox_id: str | None = None,
        model: str | None = None,
        config: Mapping[str, Any] | None = None,
        parent_session_id: str | None = None,
        *,
        runner_id: str | None = None,
        status_reason: str | None = None,
    ) -> SessionRow:
        """Insert a session (created_at = last_active_at = now). Conflict if the id exists."""
        now = self._clock()
        row = SessionRow(
            session_id, tenant_id, agent_name, sandbox_id, status, runner_id,
            parent_session_id, model, None if config is None else dict(config), now, now, status_reason,
        )
        with self._raw_write() as cursor:
            raw_writes.insert_session(self._raw, cursor, row)
        return row

    def get_session(self, tenant_id: str, session_id: str) -> SessionRow | None:
        with self._read() as conn:
            return session_queries.get(conn, tenant_id, session_id)

    def get_session_any_tenant(self, session_id: str) -> SessionRow | None:
        """Internal use only (runners, boot): the session whatever its tenant."""
        with self._read() as conn:
            return session_queries.get(conn, None, session_id)

    def list_sessions(
        self, tenant_id: str, agent_name: str | None = None, status: str | None = None
    ) -> list[SessionRow]:
        """The tenant's sessions, newest first, optionally filtered."""
        with self._read() as conn:
            return session_queries.list_for(conn, tenant_id, agent_name, status)

    def update_session(
        self,
        tenant_id: str,
        session_id: str,
        *,
        status: str | Unset = UNSET,
        sandbox_id: str | Unset | None = UNSET,
        runner_id: str | Unset | None = UNSET,
        model: str | Unset | None = UNSET,
        config: Mapping[str, Any] | Unset | None = UNSET,
        status_reason: str | Unset | None = UNSET,
        touch: bool = True,
    ) -> SessionRow | None:
        """Set only the given fields (None clears); ``touch`` sets last_active_at = now.

        Returns the updated row, or None if the tenant has no such session.
        """
        given = {"status": status, "sandbox_id": sandbox_id, "runner_id": runner_id,
                 "model": model, "config": config, "status_reason": status_reason}
        changes = {k: v for k, v in given.items() if v is not UNSET}
        if touch:
            changes["last_active_at"] = self._clock()
        with self._write() as conn:
            return session_queries.update(conn, tenant_id, session_id, changes)

    def set_session_status(self, tenant_id: str, session_id: str, status: str,
                           status_reason: str | None) -> SessionRow | None:
        """``update_session(status=, status_reason=, touch=True)`` for the lifecycle path (a
        pause, a resume: one statement on the driver's connection). The updated row, or None
        if the tenant has no such session."""
        now = self._clock()
        with self._raw_write() as cursor:
            return raw_writes.set_session_status(self._raw, cursor, tenant_id, session_id, status, status_reason, now)

    def delete_session(self, tenant_id: str, session_id: str) -> bool:
        """Delete a session row (its messages, events and transcript go with it)."""
        with self._write() as conn:
            deleted = session_queries.delete(conn, tenant_id, session_id)
        self._seqs.forget(tenant_id, session_id)
        return deleted

    def list_sessions_by_status(self, statuses: Iterable[str]) -> list[SessionRow]:
        """Internal use (boot): sessions of all tenants in any of ``statuses``."""
        with self._read() as conn:
            return session_queries.list_by_status(conn, statuses)

    def count_sessions_with_status(self, status: str) -> int:
        """Internal use (the opt-in public /health figures): sessions of all tenants in ``status``."""
        with self._read() as conn:
            return session_queries.count_with_status(conn, status)

    # -- sandboxes (internal, all tenants) ------------------------------------------

    def upsert_sandbox(self, row: SandboxRow) -> SandboxRow:
        """Insert, or overwrite all columns but id and created_at; returns the stored row."""
        with self._write() as conn:
            return sandbox_queries.upsert(conn, row)

    def get_sandbox(self, sandbox_id: str) -> SandboxRow | None:
        with self._read() as conn:
            return sandbox_queries.get(conn, sandbox_id)

    def set_sandbox_state(self, sandbox_id: str, state: str, *, touch: bool = False) -> bool:
        """Set the state (and last_used_at = now if ``touch``); False if no such row."""
        used_at = self._clock() if touch else None
        with self._write() as conn:
            return sandbox_queries.set_state(conn, sandbox_id, state, used_at)

    def delete_sandbox(self, sandbox_id: str) -> bool:
        with self._write() as conn:
            return sandbox_queries.delete(conn, sandbox_id)

    def list_sandboxes(self, state: str | None = None) -> list[SandboxRow]:
        """Sandboxes (optionally in ``state``), least recently used first."""
        with self._read() as conn:
            return sandbox_queries.list_all(conn, state)

    def warm_session_ids(self) -> set[str]:
        """Sessions whose sandbox is live (its state is not cold); an active session not among
        them is parked (its next message wakes it)."""
        with self._read() as conn:
            return sandbox_queries.session_ids_not_in(conn, "cold")

    def mark_all_sandboxes(self, state: str) -> int:
        """Boot: put every sandbox row in ``state`` (e.g. cold); returns the count."""
        with self._write() as conn:
            return sandbox_queries.mark_all(conn, state)

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

    def append_log(
        self,
        tenant_id: str,
        session_id: str,
        messages: Sequence[tuple[str, str]],
        events: Sequence[tuple[str, str]],
        stream: Sequence[tuple[int, str, str]] = (),
    ) -> None:
        """Append (role, content) messages, (type, data) events and (seq, event, data) SSE
        frames in one transaction.

        The group commit of a turn's writer: all rows or none, sequences consecutive.
        """
        if not messages and not events and not stream:
            return
        now = self._clock()
        self._appending(tenant_id, session_id, lambda cursor: raw_writes.append_log(
            self._raw, cursor, self._seqs, tenant_id, session_id, messages, events, stream, now), raw=True)

    def append_log_at_once(
        self,
        tenant_id: str,
        session_id: str,
        messages: Sequence[tuple[str, str]],
        events: Sequence[tuple[str, str]],
        stream: Sequence[tuple[int, str, str]] = (),
    ) -> bool:
        """:meth:`append_log` for a caller that must not wait (the event loop): True when the
        rows are committed; False, with nothing written, when that would mean waiting (another
        thread holds the sequences' lock, another connection SQLite's write lock, or another
        process took sequences meanwhile, or rows over :data:`AT_ONCE_MAX_CHARS`), and always on
        Postgres. On False the caller uses :meth:`append_log`. Raises what :meth:`append_log`
        raises for a failed write."""
        size = (sum(len(content) for _, content in messages) + sum(len(data) for _, data in events)
                + sum(len(data) for _, _, data in stream))
        now = self._clock()
        return self._appending_at_once(tenant_id, session_id, size, lambda cursor: raw_writes.append_log(
            self._raw, cursor, self._seqs, tenant_id, session_id, messages, events, stream, now))

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
    def _raw_write(self) -> Iterator[raw_writes.Cursor]:
        with translated_errors(self.url_masked), self._raw.transaction() as cursor:
            yield cursor

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with translated_errors(self.url_masked), self._engine.connect() as conn:
            conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                yield conn


    # -- usage (model proxy metering; ashd/store/usage.py) ----------------------------

    def record_usage(self, tenant_id: str, session_id: str, agent_name: str, values: dict[str, float]) -> None:
        """Insert one usage event per metric (``usage.EVENT_TYPES``)."""
        now = self._clock()
        with self._raw_write() as cursor:
            raw_writes.record_usage(self._raw, cursor, tenant_id, session_id, agent_name, values, now)

    def list_usage(self, flt: usage.UsageFilter) -> list[dict[str, Any]]:
        with self._read() as conn:
            return usage.list_events(conn, flt)

    def usage_stats(self, flt: usage.UsageFilter) -> dict[str, float]:
        with self._read() as conn:
            return usage.stats(conn, flt)

    def analytics_summary(self, tenant_id: str, window: analytics.Window) -> dict[str, Any]:
        """The tenant's figures over ``window`` (``GET /api/analytics``; ``analytics.py``)."""
        with self._read() as conn:
            return analytics.summary(conn, tenant_id, window)

    # -- credentials (ashd/store/credential_queries.py) -------------------------------

    def add_credential(self, row: credential_queries.CredentialRow) -> credential_queries.CredentialRow:
        """Insert a sealed credential (the caller chose its id and sealed it for that id);
        created_at is set to now. Returns the stored row."""
        row = dataclasses.replace(row, created_at=self._clock())
        with self._write() as conn:
            credential_queries.insert(conn, row)
        return row

    def get_credential(self, tenant_id: str, credential_id: str) -> credential_queries.CredentialRow | None:
        with self._read() as conn:
            return credential_queries.get(conn, tenant_id, credential_id)

    def list_credentials(self, tenant_id: str) -> list[credential_queries.CredentialRow]:
        """The tenant's credentials, oldest first."""
        with self._read() as conn:
            return credential_queries.list_for(conn, tenant_id)

    def delete_credential(self, tenant_id: str, credential_id: str) -> bool:
        """False if the tenant has no such credential."""
        with self._write() as conn:
            return credential_queries.delete(conn, tenant_id, credential_id)

    def touch_credential(self, tenant_id: str, credential_id: str) -> None:
        """Set last_used_at = now."""
        with self._write() as conn:
            credential_queries.touch(conn, tenant_id, credential_id, self._clock())

    # -- agent versions (ashd/store/version_queries.py) ---------------------------------

    def list_agent_versions(self, tenant_id: str, agent_name: str) -> list[version_queries.AgentVersionRow]:
        """The agent's versions by number."""
        with self._read() as conn:
            return version_queries.list_for(conn, tenant_id, agent_name)

    def get_agent_version(self, tenant_id: str, agent_name: str,
                          ref: version_queries.VersionRef) -> version_queries.AgentVersionRow | None:
        """By number (int) or id (str)."""
        with self._read() as conn:
            return version_queries.get(conn, tenant_id, agent_name, ref)

    def create_agent_version(self, tenant_id: str, agent_name: str, fields: Mapping[str, Any],
                             created_by: str | None = None) -> version_queries.AgentVersionRow:
        """The next version number. Conflict if a concurrent create took the number."""
        with self._write() as conn:
            return version_queries.create(conn, tenant_id, agent_name, fields, created_by, self._clock())

    def update_agent_version(self, tenant_id: str, agent_name: str, ref: version_queries.VersionRef,
                             changes: Mapping[str, Any]) -> version_queries.AgentVersionRow | None:
        """Set the given columns (name, system_prompt, release_notes, knowledge_files)."""
        with self._write() as conn:
            return version_queries.update(conn, tenant_id, agent_name, ref, changes, self._clock())

    def delete_agent_version(self, tenant_id: str, agent_name: str, version_id: str) -> bool:
        with self._write() as conn:
            return version_queries.delete(conn, tenant_id, agent_name, version_id)

    def activate_agent_version(self, tenant_id: str, agent_name: str, version_id: str) -> bool:
        """Make it the only active version (and the agent's active_version_id); False if absent."""
        with self._write() as conn:
            return version_queries.activate(conn, tenant_id, agent_name, version_id, self._clock())

    def active_system_prompt(self, tenant_id: str, agent_name: str) -> str | None:
        """The active version's systemPrompt (None: no active version or no prompt)."""
        with self._read() as conn:
            return version_queries.active_prompt(conn, tenant_id, agent_name)

    def agent_and_prompt(self, tenant_id: str, name: str) -> tuple[AgentRow | None, str | None]:
        """``get_agent`` and, if it exists, ``active_system_prompt`` in one read transaction
        (a session create needs both: one pool checkout, one snapshot)."""
        with self._read() as conn:
            agent = agent_queries.get(conn, tenant_id, name)
            return agent, None if agent is None else version_queries.active_prompt(conn, tenant_id, name)

    def patch_agent(self, tenant_id: str, name: str, env: Mapping[str, str] | None,
                    config: Mapping[str, Any] | None) -> AgentRow | None:
        """PATCH /api/agents/:name: replace env and/or config (None keeps it), no version bump."""
        with self._write() as conn:
            return agent_queries.set_env_and_config(conn, tenant_id, name, env, config, self._clock())

    # -- attachments (ashd/store/attachment_queries.py) ---------------------------------

    def add_attachment(self, row: attachment_queries.AttachmentRow) -> attachment_queries.AttachmentRow:
        """Insert an attachment (the caller chose its id and stored its bytes); created_at is
        set to now. Raises StoreError if the session does not exist."""
        row = dataclasses.replace(row, created_at=self._clock())
        with self._write() as conn:
            return attachment_queries.insert(conn, row)

    def get_attachment(self, tenant_id: str, attachment_id: str) -> attachment_queries.AttachmentRow | None:
        with self._read() as conn:
            return attachment_queries.get(conn, tenant_id, attachment_id)

    def list_attachments(self, tenant_id: str, session_id: str) -> list[attachment_queries.AttachmentRow]:
        """The session's attachments, oldest first."""
        with self._read() as conn:
            return attachment_queries.list_for(conn, tenant_id, session_id)

    def delete_attachment(self, tenant_id: str, attachment_id: str) -> bool:
        with self._write() as conn:
            return attachment_queries.delete(conn, tenant_id, attachment_id)

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

    # -- queue (ashd/store/queue_queries.py) --------------------------------------------

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
