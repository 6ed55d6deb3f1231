"""Sessions: create, partial updates, ordering, filters, tenant isolation."""

from __future__ import annotations

import pytest

from ashd.store import Conflict, Store

SID = "6f1c2b9e-0d7a-4c55-9d3e-2a1b0c9d8e7f"


def test_create_and_get(store: Store) -> None:
    created = store.create_session(
        "t1", SID, "qa", "starting", sandbox_id=SID, model="claude-x",
        config={"maxTurns": 3}, parent_session_id=None, runner_id="runner-a",
    )
    assert created.created_at == created.last_active_at
    assert store.get_session("t1", SID) == created
    assert store.get_session_any_tenant(SID) == created
    assert created.config == {"maxTurns": 3}


def test_duplicate_id_is_a_conflict(store: Store) -> None:
    store.create_session("t1", SID, "qa", "active")
    with pytest.raises(Conflict):
        store.create_session("t2", SID, "qa", "active")


def test_ids_longer_than_36_are_refused_on_every_backend(store: Store) -> None:
    with pytest.raises(ValueError, match="36"):
        store.create_session("t1", "x" * 37, "qa", "active")


def test_other_tenants_cannot_read_or_update(store: Store) -> None:
    store.create_session("t1", SID, "qa", "active")
    assert store.get_session("t2", SID) is None
    assert store.list_sessions("t2") == []
    assert store.update_session("t2", SID, status="ended") is None
    assert store.get_session("t1", SID).status == "active"  # type: ignore[union-attr]


def test_update_sets_only_given_fields(store: Store) -> None:
    before = store.create_session("t1", SID, "qa", "active", sandbox_id=SID, model="m1",
                                  config={"a": 1})
    after = store.update_session("t1", SID, status="paused", sandbox_id=None)
    assert after is not None
    assert (after.status, after.sandbox_id) == ("paused", None)
    assert (after.model, after.config, after.created_at) == ("m1", {"a": 1}, before.created_at)
    assert after.last_active_at > before.last_active_at
    assert store.get_session("t1", SID) == after


def test_update_without_touch_keeps_last_active(store: Store) -> None:
    before = store.create_session("t1", SID, "qa", "active")
    after = store.update_session("t1", SID, model="m2", config=None, runner_id="r1",
                                 touch=False)
    assert after is not None
    assert (after.model, after.runner_id) == ("m2", "r1")
    assert after.last_active_at == before.last_active_at
    assert store.update_session("t1", SID, touch=False) == after
    assert store.update_session("t1", "missing") is None


def test_list_is_newest_first_and_filters(store: Store) -> None:
    store.create_session("t1", "s1", "qa", "active")
    store.create_session("t1", "s2", "writer", "paused")
    store.create_session("t1", "s3", "qa", "paused")
    store.create_session("t2", "s4", "qa", "paused")
    assert [s.id for s in store.list_sessions("t1")] == ["s3", "s2", "s1"]
    assert [s.id for s in store.list_sessions("t1", agent_name="qa")] == ["s3", "s1"]
    assert [s.id for s in store.list_sessions("t1", status="paused")] == ["s3", "s2"]
    assert [s.id for s in store.list_sessions("t1", "qa", "paused")] == ["s3"]


def test_list_by_status_spans_tenants(store: Store) -> None:
    store.create_session("t1", "s1", "qa", "active")
    store.create_session("t2", "s2", "qa", "starting")
    store.create_session("t2", "s3", "qa", "ended")
    found = store.list_sessions_by_status(["active", "starting"])
    assert sorted(s.id for s in found) == ["s1", "s2"]
    assert store.list_sessions_by_status([]) == []


def test_set_status_sets_status_and_reason_and_touches_only(store: Store) -> None:
    before = store.create_session("t1", SID, "qa", "starting", sandbox_id=SID, model="m1", config={"a": 1},
                                  status_reason="why")
    assert before.status_reason == "why" and store.get_session("t1", SID) == before
    after = store.set_session_status("t1", SID, "paused", "paused by request")
    assert after is not None and store.get_session("t1", SID) == after
    assert (after.status, after.status_reason) == ("paused", "paused by request")
    assert (after.sandbox_id, after.model, after.config, after.created_at) == (SID, "m1", {"a": 1}, before.created_at)
    assert after.last_active_at > before.last_active_at
    assert store.set_session_status("t1", SID, "active", None).status_reason is None  # type: ignore[union-attr]
    assert store.set_session_status("t2", SID, "ended", None) is None  # another tenant's: untouched
    assert store.get_session("t1", SID).status == "active"  # type: ignore[union-attr]
