"""Session leases on a shared Postgres: which coordinator owns a session's live sandbox.

One coordinator at a time owns a session's live sandbox. Ownership is a session-level advisory
lock (``pg_try_advisory_lock`` on a 64-bit key of the session id) taken on one dedicated
connection per coordinator, the *lease connection*; nothing in a coordinator's memory is the
truth. When a coordinator dies or its lease connection drops, Postgres frees its locks; the
coordinator itself treats every lease it held as lost the moment its connection fails (the
caller's ``on_lost``), before the server can notice (client-side TCP timeouts of a few seconds,
server-side keepalives of about 25 s set on this connection), so two coordinators never both
believe they own a session.

Each lease taken draws a *generation* from the ``session_lease_generation`` sequence
(migration 0010): a number that only rises across every coordinator, which the runner uses to
refuse an older owner (fencing).

The same connection carries the handover: a coordinator that needs a session another one holds
NOTIFYs :data:`RELEASE_CHANNEL` with ``"<session id> <request id>"``; every coordinator LISTENs,
and the holder answers on :data:`REPLY_CHANNEL` with ``"<request id> <answer>"``. Losing the
connection loses the locks and the listening together: a coordinator never holds a lease it
cannot be asked to give back.

Threads: :class:`SessionLeases` runs one thread of its own that owns the connection; the
public methods are called from any thread, block for one round trip (bounded by ``timeout``)
and raise :class:`~ashd.store.errors.StoreUnavailable` while the connection is down. The
callbacks run on the lease thread and must not call back into it (hand them to a loop).
"""

from __future__ import annotations

import logging
import os
import queue
import selectors
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

import psycopg

from .errors import StoreUnavailable
from .own_connection import advisory_key, run_reconnecting

log = logging.getLogger(__name__)

RELEASE_CHANNEL = "ashd_session_release"
REPLY_CHANNEL = "ashd_session_release_reply"
HEARTBEAT_S = 1.0  # a round trip this often finds a dead connection (client-side timeouts bound it)
CALL_TIMEOUT_S = 10.0
# Client side: a connection that stops answering fails within ~5 s (keepalives, and
# tcp_user_timeout for unacknowledged data). Server side (the options below): the backend
# notices a vanished coordinator only after ~25 s, so the coordinator has always given its
# leases up before Postgres frees them for another.
CLIENT = {"keepalives": 1, "keepalives_idle": 2, "keepalives_interval": 1, "keepalives_count": 3,
          "tcp_user_timeout": 5000, "connect_timeout": 5}
SERVER_OPTIONS = "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3 " \
                 "-c tcp_user_timeout=25000"

T = TypeVar("T")
OnAsked = Callable[[str, str], None]  # (session id, request id): another coordinator wants the session
OnAnswer = Callable[[str, str], None]  # (request id, answer): the holder answered a request of ours
OnLost = Callable[[dict[str, int]], None]  # the connection failed: every lease held (session -> generation)


def lock_key(session_id: str) -> int:
    """The advisory lock key of a session: a signed 64-bit hash of its id."""
    return advisory_key("ashd-session-lease:", session_id)


def parse_pair(payload: str) -> tuple[str, str] | None:
    """``"<a> <b>"`` -> (a, b), or None for a payload that is not ours."""
    first, _, second = payload.partition(" ")
    return (first, second) if first and second and " " not in second else None


class SessionLeases:
    def __init__(self, connect_params: Mapping[str, Any], name: str, on_asked: OnAsked, on_answer: OnAnswer,
                 on_lost: OnLost, heartbeat_s: float = HEARTBEAT_S) -> None:
        """``connect_params``: psycopg's keyword arguments for the database; ``name``: this
        coordinator, as other coordinators see the holder of a lease (application_name)."""
        self._params = {**CLIENT, **connect_params, "application_name": f"ashd-lease {name}"[:63],
                        "options": SERVER_OPTIONS}
        self.name = name
        self._on_asked = on_asked
        self._on_answer = on_answer
        self._on_lost = on_lost
        self._heartbeat_s = heartbeat_s
        self._held: dict[str, int] = {}  # session id -> generation (lease thread writes; any thread reads)
        self._commands: queue.SimpleQueue[tuple[Callable[[psycopg.Connection[Any]], Any], Future[Any]]] = \
            queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._stop = threading.Event()
        self._up = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ashd-leases", daemon=True)
        self.connects = 0

    # -- any thread ---------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Close the connection (Postgres frees every lock). Blocking, about ``timeout`` at most."""
        self._stop.set()
        self._wake()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def wait_up(self, timeout: float) -> bool:
        return self._up.wait(timeout)

    @property
    def up(self) -> bool:
        return self._up.is_set()

    def generation(self, session_id: str) -> int | None:
        """The generation of this coordinator's lease on the session, or None (no I/O)."""
        return self._held.get(session_id)

    def held(self) -> dict[str, int]:
        return dict(self._held)

    def hold(self, session_id: str, timeout: float = CALL_TIMEOUT_S) -> tuple[int, bool] | None:
        """Take the session's lease: (generation, whether it is new here), or None when another
        coordinator holds it. One already held here is kept (not locked twice)."""
        def take(conn: psycopg.Connection[Any]) -> tuple[int, bool] | None:
            held = self._held.get(session_id)
            if held is not None:
                return held, False
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(session_id),)).fetchone()
            if not row or not row[0]:
                return None
            generation = conn.execute("SELECT nextval('session_lease_generation')").fetchone()
            assert generation is not None
            self._held[session_id] = int(generation[0])
            return int(generation[0]), True

        return self._call(take, timeout)

    def release(self, session_id: str, timeout: float = CALL_TIMEOUT_S) -> bool:
        """Give the session's lease up (idempotent); True if it was held here."""
        def unlock(conn: psycopg.Connection[Any]) -> bool:
            if self._held.pop(session_id, None) is None:
                return False
            conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key(session_id),))
            return True

        return self._call(unlock, timeout)

    def holder(self, session_id: str, timeout: float = CALL_TIMEOUT_S) -> str | None:
        """Which coordinator holds the session's lease (its name), or None if nobody does."""
        def who(conn: psycopg.Connection[Any]) -> str | None:
            key = lock_key(session_id) & 0xFFFFFFFFFFFFFFFF
            row = conn.execute(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.classid::bigint = %s AND l.objid::bigint = %s "
                "AND l.objsubid = 1 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                (key >> 32, key & 0xFFFFFFFF)).fetchone()
            return str(row[0]).removeprefix("ashd-lease ") if row else None

        return self._call(who, timeout)

    def ask(self, session_id: str, request_id: str, timeout: float = CALL_TIMEOUT_S) -> None:
        """Ask the holder of the session's lease to give it up (it answers on the reply channel)."""
        self._call(lambda conn: conn.execute("SELECT pg_notify(%s, %s)", (RELEASE_CHANNEL,
                                                                          f"{session_id} {request_id}")), timeout)

    def answer(self, request_id: str, answer: str, timeout: float = CALL_TIMEOUT_S) -> None:
        self._call(lambda conn: conn.execute("SELECT pg_notify(%s, %s)", (REPLY_CHANNEL, f"{request_id} {answer}")),
                   timeout)

    def _call(self, work: Callable[[psycopg.Connection[Any]], T], timeout: float) -> T:
        if not self._up.is_set():
            raise StoreUnavailable("the coordinator's lease connection to the database is down; retry shortly")
        future: Future[T] = Future()
        self._commands.put((work, future))
        self._wake()
        try:
            return future.result(timeout)
        except FutureTimeout:
            raise StoreUnavailable("the coordinator's lease connection did not answer in time") from None

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"w")
        except BlockingIOError:
            pass  # already awake

    # -- the lease thread -----------------------------------------------------------------

    def _run(self) -> None:
        run_reconnecting(self._stop, self._serve, log, "session leases: the lease connection", logging.ERROR)
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _serve(self) -> None:
        """One connection's life. Whatever ends it (a failure, a stop), every lease is gone."""
        try:
            with psycopg.connect(**self._params, autocommit=True) as conn:
                conn.execute(f"LISTEN {RELEASE_CHANNEL}")
                conn.execute(f"LISTEN {REPLY_CHANNEL}")
                self.connects += 1
                self._up.set()
                if self.connects > 1:
                    log.info("session leases: the lease connection is up again (connection %d)", self.connects)
                self._loop(conn)
        finally:
            self._up.clear()
            self._fail_waiting()
            lost, self._held = self._held, {}
            if lost and not self._stop.is_set():
                log.error("session leases: the lease connection is gone; %d session(s) are no longer owned here: %s",
                          len(lost), ", ".join(sorted(lost)[:10]))
            if lost and not self._stop.is_set():  # stopping: ashd is ending, its sessions with it
                self._on_lost(lost)

    def _loop(self, conn: psycopg.Connection[Any]) -> None:
        beat = time.monotonic() + self._heartbeat_s
        with selectors.DefaultSelector() as selector:
            selector.register(conn.fileno(), selectors.EVENT_READ, "db")
            selector.register(self._wake_r, selectors.EVENT_READ, "wake")
            while not self._stop.is_set():
                self._run_commands(conn)
                for note in conn.notifies(timeout=0):  # also those that arrived during a command
                    self._dispatch(note.channel, note.payload)
                for key, _ in selector.select(max(0.0, beat - time.monotonic())):
                    if key.data == "wake":
                        os.read(self._wake_r, 4096)
                    else:
                        conn.execute("SELECT 1")  # readable: notifications, or the connection ended
                if time.monotonic() >= beat:
                    conn.execute("SELECT 1")
                    beat = time.monotonic() + self._heartbeat_s

    def _run_commands(self, conn: psycopg.Connection[Any]) -> None:
        while True:
            try:
                work, future = self._commands.get_nowait()
            except queue.Empty:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(work(conn))
            except psycopg.Error as exc:
                future.set_exception(StoreUnavailable(f"lease connection failed: {exc}"))
                raise
            except Exception as exc:  # boundary: the caller gets it
                future.set_exception(exc)

    def _fail_waiting(self) -> None:
        while True:
            try:
                _, future = self._commands.get_nowait()
            except queue.Empty:
                return
            if future.set_running_or_notify_cancel():
                future.set_exception(StoreUnavailable("the lease connection closed; retry shortly"))

    def _dispatch(self, channel: str, payload: str) -> None:
        pair = parse_pair(payload)
        if pair is None:
            return
        try:
            if channel == RELEASE_CHANNEL:
                if pair[0] in self._held:  # only the holder answers
                    self._on_asked(*pair)
            elif channel == REPLY_CHANNEL:
                self._on_answer(*pair)
        except Exception:  # boundary: a callback's bug must not drop the connection
            log.exception("session leases: a %s notification was not handled", channel)
