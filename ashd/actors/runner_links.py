"""RunnerLinkSupervisor and RunnerLinkActor: a coordinator's runners, one actor each.

The supervisor reads the live runners from the registry (``runner_queries.live``) every
``cluster.heartbeat_interval_s`` and keeps one :class:`RunnerLinkActor` per runner id: it
starts one for a runner that appeared, stops the actor of one that left (its link closes, its
sandboxes are lost and their turns end with error + done), passes each actor its runner's
latest row, and starts again an actor that crashed. A link actor holds its runner's facts
(address, capacity, generation) and opens its connection in the :class:`LinkTable` on the
IOLoop; frames never pass through it. A runner that registered again (a higher generation:
it restarted, or came back from a partition) gets a new link: the old one's sandboxes are
gone on the runner, so nothing is served under the stale generation. At each refresh it also
hands the draining runners to the drain (ashd/actors/drain.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

import pykka

from ashd.actors.children import ChildSpec, Crashed, actor_ping, actor_stop
from ashd.actors.tell import tell
from ashd.actors.timers import Timer, Timers
from ashd.runnerlink.table import LinkState, LinkTable
from ashd.store import RunnerRow, Store, StoreError
from ashd.store import runner_queries as rq

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class RunnerView:
    """A runner as the coordinator sees it (registry row + link state), for health and tests."""

    runner_id: str
    generation: int
    max_sandboxes: int
    active: int
    link: LinkState


class RunnerLinkActor(pykka.ThreadingActor):
    def __init__(self, runner: RunnerRow, table: LinkTable) -> None:
        super().__init__()
        self._runner = runner
        self._table = table

    def on_start(self) -> None:
        self._table.open(self._runner.id, self._runner.host, self._runner.port, self._runner.generation)

    def on_stop(self) -> None:
        self._table.close(self._runner.id)

    def update(self, runner: RunnerRow) -> None:
        """The runner's latest row; a new address or generation gets a new link."""
        old, self._runner = self._runner, runner
        if (runner.host, runner.port, runner.generation) != (old.host, old.port, old.generation):
            log.info("runner %s registered again (generation %d -> %d); relinking", runner.id, old.generation,
                     runner.generation)
            self._table.close(runner.id)
            self._table.open(runner.id, runner.host, runner.port, runner.generation)

    def view(self) -> RunnerView:
        r = self._runner
        return RunnerView(r.id, r.generation, r.max_sandboxes, r.active_count, self._table.state(r.id))


class RunnerLinkSupervisor(pykka.ThreadingActor):
    def __init__(self, store: Store, table: LinkTable, interval_s: float, liveness_timeout_s: float,
                 timers: Timers | None = None, crashed: Crashed | None = None,
                 drains: Callable[[set[str]], None] | None = None) -> None:
        """``drains``: given the draining live runners at each refresh (``RunnerDrain.look``)."""
        super().__init__()
        self._drains = drains
        self._crashed = crashed
        self._store = store
        self._table = table
        self._interval = interval_s
        self._timeout = liveness_timeout_s
        self._timers = timers or Timers()
        self._own_timers = timers is None
        self._children: dict[str, pykka.ActorRef[RunnerLinkActor]] = {}
        self._timer: Timer | None = None

    def on_start(self) -> None:
        self.refresh()

    def on_stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for ref in self._children.values():
            _stop(ref)
        self._children.clear()
        if self._own_timers:
            self._timers.stop()

    def on_failure(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                   tb: TracebackType | None) -> None:
        self.on_stop()
        if self._crashed is not None:
            self._crashed(f"runner link supervisor crashed: {exc!r}")

    def ping(self) -> bool:
        return True

    def refresh(self) -> None:
        """Bring the children in line with the registry's live runners; schedule the next."""
        try:
            rows = self._store.read_with(rq.live, rq.cutoff(self._store.now(), self._timeout))
        except StoreError as exc:
            log.warning("runner links: registry not read (%s); keeping the current links", exc)
            rows = None
        if rows is not None:
            self._reconcile({row.id: row for row in rows})
            self._drain({row.id for row in rows if row.draining})
        me = self.actor_ref.proxy()
        self._timer = self._timers.call_later(self._interval, lambda: tell(me.refresh, context="runner links"))

    def _reconcile(self, live: dict[str, RunnerRow]) -> None:
        for runner_id in [r for r in self._children if r not in live]:
            log.warning("runner %s left the registry; closing its link", runner_id)
            _stop(self._children.pop(runner_id))
        for runner_id, row in live.items():
            ref = self._children.get(runner_id)
            if ref is not None and not ref.is_alive():
                log.error("runner link actor %s had stopped; starting it again", runner_id)
                ref = None
            if ref is None:
                self._children[runner_id] = RunnerLinkActor.start(row, self._table)
            else:
                tell(ref.proxy().update, row, context=f"runner {runner_id}")

    def _drain(self, draining: set[str]) -> None:
        if self._drains is None:
            return
        try:
            self._drains(draining)
        except Exception:  # boundary: the links must go on whatever a drain pass raised
            log.exception("drain of runners %s failed; trying again at the next refresh", sorted(draining))

    def views(self) -> list[RunnerView]:
        out = []
        for ref in list(self._children.values()):
            try:
                out.append(ref.proxy().view().get(timeout=STOP_TIMEOUT_S))
            except (pykka.ActorDeadError, pykka.Timeout):
                continue
        return out

    def child(self, runner_id: str) -> pykka.ActorRef[RunnerLinkActor] | None:
        return self._children.get(runner_id)


def _stop(ref: pykka.ActorRef[RunnerLinkActor]) -> None:
    try:
        ref.stop(timeout=STOP_TIMEOUT_S)
    except (pykka.ActorDeadError, pykka.Timeout):
        pass



def runner_links_child(store: Store, table: LinkTable, interval_s: float, liveness_timeout_s: float,
                       drains: Callable[[set[str]], None] | None = None) -> ChildSpec:
    """The root's child for the coordinator's runner links (and the drain's look)."""
    def start(crashed: Crashed) -> pykka.ActorRef[RunnerLinkSupervisor]:
        return RunnerLinkSupervisor.start(store, table, interval_s, liveness_timeout_s, crashed=crashed,
                                          drains=drains)

    return ChildSpec("runner links", start, actor_ping(lambda proxy: proxy.ping()), actor_stop)
