"""Placement: which runner a coordinator starts a session's sandbox on (coordinator)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from ashd.errors import Unavailable
from ashd.sandbox.launcher import SandboxSpec
from ashd.store import Store, StoreError
from ashd.store import runner_queries as rq

log = logging.getLogger(__name__)

NO_RUNNERS = ("No runners available: no live runner with a free slot is registered with the coordinators "
              "(start a runner with ASH_MODE=runner, or wait for one to free up)")


class Placement:
    """Which runner a sandbox starts on: the session's own while its link is up and it does
    not drain (sessions stick to their runner), else the least-loaded live runner
    (``runner_queries.pick``, one locking statement, a warming slot reserved until the start
    ends), recorded on the session row. A session of a draining runner stays on it when no
    other linked runner has room. Blocking (store); called on the sandbox actor's thread."""

    def __init__(self, store: Store, liveness_timeout_s: float, connected: Callable[[str], bool]) -> None:
        self._store = store
        self._timeout = liveness_timeout_s
        self._connected = connected

    def place(self, spec: SandboxSpec) -> tuple[str, bool]:
        """(runner id, whether a warming slot was reserved). Raises Unavailable (503).
        A session whose runner drains moves to another one; while none has room it stays."""
        if spec.runner_id is not None and self._connected(spec.runner_id):
            if not self._draining(spec.runner_id):
                return spec.runner_id, False
            try:
                moved = self._pick(spec, "drains")
            except Unavailable:  # a runner with room that this coordinator has no link to yet
                moved = None
            if moved is None:
                log.warning("session %s: runner %s drains, but no other linked runner has room; its sandbox "
                            "starts there again", spec.session_id, spec.runner_id)
                return spec.runner_id, False
            return moved, True
        moved = self._pick(spec, "is gone")
        if moved is None:
            raise Unavailable(NO_RUNNERS, retry_after_s=5)
        return moved, True

    def _draining(self, runner_id: str) -> bool:
        try:
            row = self._store.read_with(rq.get, runner_id)
        except StoreError as exc:  # stay where it is: a drain is not worth a failed start
            log.warning("runner %s: registry not read (%s); the session stays on it", runner_id, exc)
            return False
        return row is not None and row.draining

    def _pick(self, spec: SandboxSpec, why: str) -> str | None:
        """The least-loaded runner that takes new sessions, a warming slot reserved on it and
        the session assigned to it; None when none has room. Raises Unavailable when the
        registry's pick has no link from here yet. ``why``: why the session's own runner (if
        it has one) is not used, for the log."""
        store = self._store
        row = store.write_with(rq.pick, rq.cutoff(store.now(), self._timeout))
        if row is None:
            return None
        if not self._connected(row.id):
            self.release(row.id)
            raise Unavailable(f"runner {row.id} is registered but this coordinator's link to it is not up yet; "
                              "retry shortly", retry_after_s=2)
        store.write_with(rq.assign, spec.tenant_id, spec.session_id, row.id)
        if spec.runner_id is not None:
            log.warning("session %s: runner %s %s; starting its sandbox on runner %s",
                        spec.session_id, spec.runner_id, why, row.id)
        return row.id

    def recorded(self, spec: SandboxSpec) -> str | None:
        """The runner the session's row names (where its last sandbox was placed), read afresh:
        a session actor's row may predate its last placement. None when unknown."""
        try:
            row = self._store.get_session(spec.tenant_id, spec.session_id)
        except StoreError as exc:
            log.warning("session %s: its runner not read (%s); its sandbox starts fresh", spec.session_id, exc)
            return None
        return row.runner_id if row is not None else None

    def release(self, runner_id: str) -> None:
        try:
            self._store.write_with(rq.release_warming, runner_id)
        except StoreError as exc:  # the next heartbeat resets the figure anyway
            log.warning("runner %s: warming slot not released: %s", runner_id, exc)
