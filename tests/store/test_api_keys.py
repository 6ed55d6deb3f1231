"""API keys: lookup by hash, counts per tenant, uniqueness, tenant-scoped management."""

from __future__ import annotations

import pytest

from ashd.store import Conflict, Store


def test_find_by_hash_returns_the_owning_tenant(store: Store) -> None:
    added = store.add_api_key("acme", "h-acme", "ci")
    found = store.find_api_key("h-acme")
    assert found == added
    assert (found.tenant_id, found.label) == ("acme", "ci")
    assert found.created_at.endswith("Z")
    assert store.find_api_key("h-unknown") is None


def test_counts_per_tenant_and_in_total(store: Store) -> None:
    assert store.count_api_keys() == 0
    store.add_api_key("default", "h1", "auto-generated")
    store.add_api_key("default", "h2", "cli-recovery")
    store.add_api_key("acme", "h3", "")
    assert store.count_api_keys("default") == 2
    assert store.count_api_keys("acme") == 1
    assert store.count_api_keys("nobody") == 0
    assert store.count_api_keys() == 3


def test_duplicate_hash_is_a_conflict(store: Store) -> None:
    store.add_api_key("default", "same", "a")
    with pytest.raises(Conflict):
        store.add_api_key("acme", "same", "b")
    assert store.count_api_keys() == 1


def test_list_and_delete_are_tenant_scoped(store: Store) -> None:
    mine = store.add_api_key("default", "h1", "mine")
    theirs = store.add_api_key("acme", "h2", "theirs")
    assert store.list_api_keys("default") == [mine]
    assert store.delete_api_key("default", theirs.id) is False
    assert store.find_api_key("h2") == theirs
    assert store.delete_api_key("default", mine.id) is True
    assert store.list_api_keys("default") == []


def test_scopes_are_stored_and_the_last_admin_key_can_be_kept(store: Store) -> None:
    from ashd.store.key_queries import LastAdminKey

    admin = store.add_api_key("acme", "h-admin", "a")
    reader = store.add_api_key("acme", "h-read", "r", "read")
    assert store.find_api_key("h-read").scopes == "read"  # type: ignore[union-attr]
    assert admin.scopes == "admin"
    with pytest.raises(LastAdminKey):
        store.delete_api_key("acme", admin.id, keep_last_admin=True)
    assert store.delete_api_key("acme", reader.id, keep_last_admin=True) is True
    second = store.add_api_key("acme", "h-admin2", "a2", "admin read")
    assert store.delete_api_key("acme", admin.id, keep_last_admin=True) is True
    assert store.delete_api_key("acme", second.id) is True  # without the guard: allowed
    assert store.count_api_keys("acme") == 0


def test_the_key_prefix_is_stored_and_optional(store: Store) -> None:
    with_prefix = store.add_api_key("acme", "h1", "new", "admin", "ash_AbCd")
    without = store.add_api_key("acme", "h2", "old")
    assert store.find_api_key("h1") == with_prefix and with_prefix.key_prefix == "ash_AbCd"
    assert store.find_api_key("h2") == without and without.key_prefix is None
    assert [k.key_prefix for k in store.list_api_keys("acme")] == ["ash_AbCd", None]
