"""Start-up reconciliation against a real (SQLite) store."""

from __future__ import annotations

import json
from pathlib import Path

from ashd.store import Store, recovery


def test_cut_off_turns_are_closed_and_starts_fail(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.migrate()
    store.create_session("t", "00000000-0000-0000-0000-000000000001", "a", "active")
    store.create_session("t", "00000000-0000-0000-0000-000000000002", "a", "active")
    store.create_session("t", "00000000-0000-0000-0000-000000000003", "a", "starting")
    cut, done = "00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002"
    store.append_log("t", cut, [], [], [(1, "session_start", "{}"), (2, "text_delta", "{}")])
    store.append_log("t", done, [], [], [(1, "session_start", "{}"), (2, "done", "{}")])

    assert recovery.close_cut_off_turns(store) == 1
    assert [(r.seq, r.event) for r in store.list_stream_events("t", cut)][-2:] == [(3, "error"), (4, "done")]
    assert json.loads(store.list_stream_events("t", cut)[-1].data)["sessionId"] == cut
    assert len(store.list_stream_events("t", done)) == 2  # finished turns are untouched
    assert recovery.close_cut_off_turns(store) == 0  # idempotent

    assert recovery.fail_interrupted_starts(store) == 1
    row = store.get_session("t", "00000000-0000-0000-0000-000000000003")
    assert row is not None and row.status == "error" and "starting" in (row.status_reason or "")
