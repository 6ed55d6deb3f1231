"""Draining runners: a coordinator moves its sessions off the runners the operator drains.

``ashctl runners drain r1`` marks the runner's registry row ``draining`` (any coordinator may
have done it: the row is what counts). Every coordinator's runner link supervisor reads the
live rows each heartbeat interval and hands :meth:`RunnerDrain.look` the draining ones. For
each, the sandboxes this coordinator runs there (``RemoteLauncher.hosted_on``) go to the pool
(``PoolActor.move_off``), which tells the owners of the idle ones (between turns, no prompt
queued) to move: snapshot into the shared blob store, stop the sandbox on the draining
runner, start the next one at once on another runner (``SessionActor.move``; the
``Placement`` sends it away from a draining runner), so the next message is served there,
warm. A session mid-turn is left alone and looked at again next time, after its turn.
When no other linked runner takes sessions (all full, draining or not linked from here),
nothing moves: said once per runner, tried again at each look. When none of this
coordinator's sessions is left on a draining runner that is said once too; the runner's own
heartbeat then reports ``active`` 0 (``ashctl runners``).

Runs on the link supervisor's thread (blocking store reads; the pool is only told).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import Any

from ashd.store import Store, StoreError
from ashd.store import runner_queries as rq

log = logging.getLogger(__name__)

HostedOn = Callable[[Collection[str]], list[tuple[str, str]]]  # runner ids -> [(sandbox id, runner id)]
MoveOff = Callable[[list[str], str], Any]  # (sandbox ids, reason): tells the pool


class RunnerDrain:
    def __init__(self, store: Store, liveness_timeout_s: float, hosted_on: HostedOn,
                 connected: Callable[[str], bool], move_off: MoveOff) -> None:
        self._store = store
        self._timeout = liveness_timeout_s
        self._hosted_on = hosted_on
        self._connected = connected
        self._move_off = move_off
        self._said: dict[str, str] = {}  # draining runner id -> what was last logged of it

    def look(self, draining: set[str]) -> None:
        """One pass over the draining runners (ids from the registry's live rows)."""
        for runner in [r for r in self._said if r not in draining]:
            del self._said[runner]  # undrained (or gone): a new drain is told afresh
        if not draining:
            return
        hosted: dict[str, list[str]] = {runner: [] for runner in draining}
        for sandbox_id, runner in self._hosted_on(draining):
            hosted[runner].append(sandbox_id)
        for runner in sorted(r for r, ids in hosted.items() if not ids):
            self._say(runner, "empty", "runner %s drains: no session of this coordinator is left on it", runner)
        busy = {runner: ids for runner, ids in hosted.items() if ids}
        if not busy:
            return
        takers = self._takers(draining)
        for runner, ids in sorted(busy.items()):
            if not takers:
                self._say(runner, "stuck", "runner %s drains, but no other runner takes sessions (all full, "
                          "draining or not linked from this coordinator): its %d session(s) here stay until "
                          "one does", runner, len(ids))
                continue
            self._say(runner, "moving", "runner %s drains: moving its %d session(s) of this coordinator to other "
                      "runners, each at its next idle point", runner, len(ids))
            self._move_off(ids, f"runner {runner} drains")

    def _takers(self, draining: set[str]) -> list[str]:
        try:
            rows = self._store.read_with(rq.takers, rq.cutoff(self._store.now(), self._timeout))
        except StoreError as exc:
            log.warning("drain: registry not read (%s); trying again at the next look", exc)
            return []
        return [r for r in rows if r not in draining and self._connected(r)]

    def _say(self, runner: str, what: str, message: str, *args: object) -> None:
        if self._said.get(runner) != what:
            self._said[runner] = what
            log.info(message, *args)
