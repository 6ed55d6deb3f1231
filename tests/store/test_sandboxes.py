"""Sandboxes: upsert, state changes, listing, boot-time marking, deletion."""

from __future__ import annotations

from ashd.store import SandboxRow, Store


def _row(sandbox_id: str, state: str = "warm", used: str = "2026-01-01T00:00:00.000Z",
         session_id: str | None = None) -> SandboxRow:
    return SandboxRow(sandbox_id, "t1", session_id, "qa", state, f"/data/sandboxes/{sandbox_id}",
                      "2026-01-01T00:00:00.000Z", used)


def test_upsert_inserts_then_overwrites_but_keeps_created_at(store: Store) -> None:
    assert store.upsert_sandbox(_row("sb1")) == _row("sb1")
    changed = SandboxRow("sb1", "t1", "s1", "qa", "running", "/elsewhere",
                         "2030-01-01T00:00:00.000Z", "2026-02-01T00:00:00.000Z")
    stored = store.upsert_sandbox(changed)
    assert stored.created_at == "2026-01-01T00:00:00.000Z"
    assert (stored.session_id, stored.state, stored.workspace_dir) == ("s1", "running",
                                                                      "/elsewhere")
    assert store.get_sandbox("sb1") == stored


def test_set_state_and_touch(store: Store) -> None:
    store.upsert_sandbox(_row("sb1"))
    assert store.set_sandbox_state("sb1", "waiting") is True
    assert store.get_sandbox("sb1").last_used_at == _row("sb1").last_used_at  # type: ignore[union-attr]
    assert store.set_sandbox_state("sb1", "running", touch=True) is True
    row = store.get_sandbox("sb1")
    assert row is not None and row.state == "running"
    assert row.last_used_at > _row("sb1").last_used_at
    assert store.set_sandbox_state("missing", "cold") is False


def test_list_filters_by_state_least_recently_used_first(store: Store) -> None:
    store.upsert_sandbox(_row("new", "warm", "2026-03-01T00:00:00.000Z"))
    store.upsert_sandbox(_row("old", "warm", "2026-01-01T00:00:00.000Z"))
    store.upsert_sandbox(_row("busy", "running", "2026-02-01T00:00:00.000Z"))
    assert [s.id for s in store.list_sandboxes()] == ["old", "busy", "new"]
    assert [s.id for s in store.list_sandboxes("warm")] == ["old", "new"]


def test_mark_all_and_delete(store: Store) -> None:
    store.upsert_sandbox(_row("a", "running"))
    store.upsert_sandbox(_row("b", "warm"))
    assert store.mark_all_sandboxes("cold") == 2
    assert {s.state for s in store.list_sandboxes()} == {"cold"}
    assert store.delete_sandbox("a") is True
    assert store.delete_sandbox("a") is False
    assert [s.id for s in store.list_sandboxes()] == ["b"]
