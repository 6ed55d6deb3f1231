"""Where a sandbox's usage and notices are recorded: the store, the metrics, and the running turn.

Usage rows are queued in the store (``Store.queue_usage``): the last commit of the next turn
to end (with its ``done``) takes them along, so a model call costs no transaction of its own
on the single writer at the moment the turn's first text is being committed
(``ashd/store/usage_queue.py``). What no turn took within :data:`USAGE_WAIT_S` is written by
itself, and so is everything queued before the session's spend is read and when ashd stops.
A crash loses at most that long of metered usage. Notices (an OOM kill, an egress decision)
are written at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from ashd.errors import SandboxFailed
from ashd.metrics import Metrics
from ashd.proxy.meter import Usage
from ashd.sandbox.isolating_launcher import event_json
from ashd.sandbox.launcher import SandboxSpec
from ashd.store import Store, StoreError
from ashd.store.usage import UsageFilter

log = logging.getLogger(__name__)

WriteSoon = Callable[..., "Future[Any]"]  # queue fn(*args) on a writer thread, don't wait
Notify = Callable[[str, str, dict[str, Any]], None]
"""(tenant, session, payload) of a sandbox event (OOM kill, egress decision); any thread."""

CLOSE_WAIT_S = 10.0
USAGE_WAIT_S = 0.5  # queued usage no turn's commit took is written by itself after this long


class Recorder:
    """Records a sandbox's usage and notices (see module docstring). Standalone's sandbox
    services use it, and so does a coordinator for what its runners report
    (ashd/sandbox/remote.py). Any thread.

    ``write_soon`` queues a write on another writer thread (on SQLite the daemon's single
    writer, ``Offload.write_soon``: a second writer would make the turns' commits wait on
    SQLite's lock, whose busy handler sleeps a millisecond or more). Without it, the recorder
    keeps a writer thread of its own."""

    def __init__(self, store: Store, notify: Notify | None, metrics: Metrics,
                 write_soon: WriteSoon | None = None) -> None:
        self._store = store
        self._notify = notify
        self._metrics = metrics
        self._own: ThreadPoolExecutor | None = None
        if write_soon is None:
            self._own = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sandbox-events")
            write_soon = self._own.submit
        self._write_soon = write_soon
        self._last: Future[Any] | None = None
        self._lock = threading.Lock()
        self._due: float | None = None  # when queued usage is written by itself (monotonic)
        self._wake = threading.Condition(self._lock)
        self._flusher: threading.Thread | None = None  # writes it then (one thread, started on first use)
        self._closing = False

    def notice(self, tenant: str, session: str, payload: dict[str, Any]) -> None:
        self._write(_append, self._store, tenant, session, payload)
        if self._notify is not None:
            self._notify(tenant, session, payload)

    def usage(self, tenant: str, session: str, agent_name: str, usage: Usage) -> None:
        values = {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
                  "cache_creation_tokens": usage.cache_creation_tokens, "cache_read_tokens": usage.cache_read_tokens,
                  "tool_call": usage.tool_calls, "message": 1, "cost_usd": usage.cost_usd}
        self._store.queue_usage(tenant, session, agent_name, values)
        self._metrics.record_usage(usage)
        with self._lock:
            if self._due is None and not self._closing:
                self._due = time.monotonic() + USAGE_WAIT_S
                if self._flusher is None:
                    self._flusher = threading.Thread(target=self._flush_when_due, name="usage-flush", daemon=True)
                    self._flusher.start()
                self._wake.notify()

    def spent_usd(self, tenant: str, session: str) -> float:
        """What the session has cost so far (its recorded usage, queued rows included). Blocking."""
        self._wait(self._write_queued())
        return float(self._store.usage_stats(UsageFilter(tenant, session))["totalCostUsd"])

    def spent_before_start(self, spec: SandboxSpec) -> float:
        """What the session has cost before a start of its sandbox, where its model proxy's gate
        starts, so its ``maxBudgetUsd`` spans every sandbox it has had (0 without a budget:
        nothing is read). Blocking. Raises SandboxFailed when it cannot be read: nothing starts."""
        if spec.policy.max_budget_usd is None:
            return 0.0
        try:
            return self.spent_usd(spec.tenant_id, spec.session_id)
        except StoreError as exc:
            raise SandboxFailed(f"cannot read the session's spend so far from the database: {exc}") from exc

    def close(self) -> None:
        """Write what is queued and wait until every write is done."""
        with self._lock:
            self._closing = True
            self._wake.notify()
        if self._flusher is not None:
            self._flusher.join(CLOSE_WAIT_S)
        self._write_queued()
        if self._own is not None:
            self._own.shutdown(wait=True)
        else:
            self._wait(self._last)

    def _flush_when_due(self) -> None:
        """The flusher thread: queued usage that no turn's commit took by its due time is
        written then (a model call's rows usually go with its turn's ``done``: then nothing is)."""
        while True:
            with self._lock:
                while not self._closing and (self._due is None or self._due > time.monotonic()):
                    self._wake.wait(None if self._due is None else self._due - time.monotonic())
                if self._closing:
                    return
                self._due = None
            if self._store.queued_usage():
                self._write(_write_usage, self._store)

    def _write_queued(self) -> Future[Any] | None:
        with self._lock:
            self._due = None
        return self._write(_write_usage, self._store)

    def _write(self, fn: Callable[..., None], *args: Any) -> Future[Any] | None:
        try:
            self._last = self._write_soon(fn, *args)
        except RuntimeError:  # the writer is already shut down: ashd is stopping
            log.warning("ashd is stopping: a sandbox's usage or notice was not recorded")
            return None
        return self._last

    @staticmethod
    def _wait(future: Future[Any] | None) -> None:
        if future is not None:
            with contextlib.suppress(Exception):
                future.result(timeout=CLOSE_WAIT_S)


def _append(store: Store, tenant: str, session: str, payload: dict[str, Any]) -> None:
    try:
        store.append_event(tenant, session, "lifecycle", event_json(payload))
    except Exception:
        log.exception("cannot record sandbox event for session %s: %s", session, json.dumps(payload)[:200])


def _write_usage(store: Store) -> None:
    try:
        store.write_queued_usage()
    except Exception:  # the rows stay queued for the next write
        log.exception("cannot record usage: it stays queued")
