"""The live figures behind Ash's gauges on /metrics, gathered from the actor tree and store.

Blocking (short asks with a timeout, one store read): called on a reader thread at scrape
time, never on the IOLoop or an actor thread.
"""

from __future__ import annotations

import pykka

from ashd.actors.supervisor import Tree
from ashd.errors import Unavailable
from ashd.metrics import LiveFigures
from ashd.store import Store

ASK_TIMEOUT_S = 2.0


def live_figures(tree: Tree, store: Store, timeout_s: float = ASK_TIMEOUT_S) -> LiveFigures:
    """Raises pykka.Timeout / ActorDeadError if the pool does not answer in time."""
    stats = tree.pool.stats().get(timeout=timeout_s)
    active = store.list_sessions_by_status(["active"])
    pool = {"cold": stats.cold, "warming": stats.warming, "warm": stats.warm,
            "waiting": stats.waiting, "running": stats.running}
    warm = len(store.warm_session_ids() & {row.id for row in active})
    return LiveFigures(active_sessions=len(active), active_sandboxes=stats.total,
                       max_capacity=stats.max_capacity, pool=pool,
                       warm_sessions=warm, parked_sessions=len(active) - warm)


def tree_answers(tree: Tree, timeout_s: float = ASK_TIMEOUT_S) -> bool:
    """True if the pool and the session supervisor each answer a ping within ``timeout_s``,
    and the supervision tree has not given up (ashd is then exiting: no more watchdog pings).

    Blocking (two short asks): run it on a reader thread, never on the IOLoop.
    """
    if tree.supervision.gave_up:
        return False
    try:
        tree.pool.stats().get(timeout=timeout_s)
        tree.sessions.prewarm_hits.get(timeout=timeout_s)
    except (pykka.Timeout, pykka.ActorDeadError, Unavailable):
        return False
    return True
