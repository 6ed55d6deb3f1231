"""The SSE stream log and the transcript mirror, on SQLite and Postgres."""

from __future__ import annotations

import pytest

from ashd.store import Conflict, Store, StoreError


@pytest.fixture
def session(store: Store) -> str:
    store.create_session("t1", "s1", "qa", "active")
    store.create_session("t2", "s2", "qa", "active")
    return "s1"


def test_stream_log_pages_and_is_tenant_scoped(store: Store, session: str) -> None:
    store.append_log("t1", session, [], [], [(1, "session_start", "{}"), (2, "text_delta", '{"delta":"a"}')])
    store.append_log("t1", session, [("assistant", "{}")], [("text", "{}")], [(3, "done", "{}")])
    assert [r.seq for r in store.list_stream_events("t1", session)] == [1, 2, 3]
    assert [(r.seq, r.event) for r in store.list_stream_events("t1", session, after=1, limit=1)] == [(2, "text_delta")]
    assert store.last_stream_event("t1", session).event == "done"
    assert store.list_stream_events("t2", session) == [] and store.last_stream_event("t2", session) is None
    with pytest.raises(Conflict):  # an id is never reused
        store.append_log("t1", session, [], [], [(3, "done", "{}")])
    assert len(store.list_messages("t1", session)) == 1  # the failed batch left nothing


def test_transcripts_append_load_copy(store: Store, session: str) -> None:
    store.append_transcript("t1", session, "", ['{"a":1}', '{"b":2}'])
    store.append_transcript("t1", session, "", ['{"c":3}'])
    store.append_transcript("t1", session, "subagents/agent-x", ['{"s":1}'])
    assert store.load_transcript("t1", session) == ['{"a":1}', '{"b":2}', '{"c":3}']
    assert store.transcript_subpaths("t1", session) == ["subagents/agent-x"]
    assert store.load_transcript("t2", session) == []
    with pytest.raises(StoreError):
        store.append_transcript("t2", session, "", ["x"])  # not t2's session
    store.create_session("t1", "s3", "qa", "paused")
    assert store.copy_transcript("t1", session, "s3") == 4
    assert store.load_transcript("t1", "s3") == store.load_transcript("t1", session)
    assert store.load_transcript("t1", "s3", "subagents/agent-x") == ['{"s":1}']
