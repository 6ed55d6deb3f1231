"""Start-up reconciliation after a crash or restart (blocking; run before serving).

A turn that was running when ashd stopped never stored its ``done``. Replaying such a
session would leave a client waiting forever, so the turn is closed in the log with an
``error`` and a ``done``, exactly as a live stream would have ended.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ashd.events import compact_json
from ashd.states import SessionStatus
from ashd.store import Store, eval_queries, queue_queries
from ashd.store.coordinators import lock_if_gone
from ashd.store.eval_queries import eval_runs
from ashd.store.schema import queue_items

log = logging.getLogger(__name__)

CUT_OFF = "ashd stopped during this turn; its remaining events are lost. Send the message again."
START_CUT_OFF = "ashd stopped while this session was starting; resume it to start it again"
RESTARTED = "ashd restarted while the run was in progress"


def fail_interrupted_starts(store: Store) -> int:
    """Sessions caught in ``starting`` by a shutdown go to ``error`` (resumable), with why."""
    stuck = store.list_sessions_by_status([SessionStatus.STARTING.value])
    for session in stuck:
        store.update_session(session.tenant_id, session.id, status=SessionStatus.ERROR.value,
                             status_reason=START_CUT_OFF, touch=False)
        log.warning("session %s: was starting when ashd stopped; now error (resumable)", session.id)
    return len(stuck)


def close_cut_off_turns(store: Store) -> int:
    """Append error+done to every session whose stream log ends mid-turn. Returns the count."""
    closed = 0
    for session in store.list_sessions_by_status([SessionStatus.ACTIVE.value, SessionStatus.STARTING.value]):
        last = store.last_stream_event(session.tenant_id, session.id)
        if last is None or last.event == "done":
            continue
        store.append_log(session.tenant_id, session.id, [], [("error", compact_json({"error": CUT_OFF}))], [
            (last.seq + 1, "error", compact_json({"error": CUT_OFF})),
            (last.seq + 2, "done", compact_json({"sessionId": session.id})),
        ])
        closed += 1
        log.warning("session %s: closed a turn cut off by the last shutdown (after event %d)", session.id, last.seq)
    return closed


@dataclass(frozen=True)
class Recovered:
    """What one recovery pass did: coordinator id (None: unclaimed work) -> (runs, items)."""

    by_owner: dict[str | None, tuple[int, int]]

    @property
    def runs(self) -> int:
        return sum(runs for runs, _ in self.by_owner.values())

    @property
    def items(self) -> int:
        return sum(items for _, items in self.by_owner.values())


def claimants(conn: Connection) -> set[str | None]:
    """The coordinators holding eval runs ``running`` or queue items ``processing``."""
    runs = sa.select(eval_runs.c.claimed_by).where(eval_runs.c.status == "running")
    items = sa.select(queue_items.c.claimed_by).where(queue_items.c.status == "processing")
    return set(conn.execute(sa.union(runs, items)).scalars().all())


def _recover(conn: Connection, owners: list[str | None], reason: str, now: str) -> tuple[int, int]:
    return (eval_queries.interrupt_running(conn, reason, now, claimed_by=owners),
            queue_queries.requeue_processing(conn, claimed_by=owners))


def _recover_if_gone(conn: Connection, owner: str, reason: str, now: str) -> tuple[int, int] | None:
    """One transaction: the owner's work, if its liveness lock is free (else None)."""
    if not lock_if_gone(conn, owner):
        return None
    return _recover(conn, [owner], reason, now)


def recover_claimed_work(store: Store, me: str, *, starting: bool) -> Recovered:
    """Eval runs left ``running`` become ``interrupted`` and queue items left ``processing``
    ``pending`` again, for the coordinators that are gone (``coordinators.py``). Blocking.

    SQLite (one daemon): at start, all of it; later, nothing. Postgres: at start, also
    what this id claimed before (a previous process with the same id) and work claimed
    before claims were recorded; at start and later, what every dead coordinator claimed;
    never what a live one holds.
    """
    now = store.now()
    if store.dialect != "postgresql":
        return Recovered({None: _all(store, now)} if starting else {})
    found: dict[str | None, tuple[int, int]] = {}
    if starting:
        found[me] = store.write_with(_recover, [me, None], RESTARTED, now)
    for owner in store.read_with(claimants):
        if owner is None or owner == me:
            continue
        done = store.write_with(_recover_if_gone, owner, f"coordinator {owner} stopped while the run was in progress",
                                now)
        if done is not None:
            found[owner] = done
    return Recovered({k: v for k, v in found.items() if v != (0, 0)})


def _all(store: Store, now: str) -> tuple[int, int]:
    return store.write_with(eval_queries.interrupt_running, RESTARTED, now), store.requeue_processing_items()
