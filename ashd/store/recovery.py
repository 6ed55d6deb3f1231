"""Start-up reconciliation after a crash or restart (blocking; run before serving).

A turn that was running when ashd stopped never stored its ``done``. Replaying such a
session would leave a client waiting forever, so the turn is closed in the log with an
``error`` and a ``done``, exactly as a live stream would have ended.
"""

from __future__ import annotations

import logging

from ashd.events import compact_json
from ashd.states import SessionStatus
from ashd.store import Store

log = logging.getLogger(__name__)

CUT_OFF = "ashd stopped during this turn; its remaining events are lost. Send the message again."
START_CUT_OFF = "ashd stopped while this session was starting; resume it to start it again"


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
