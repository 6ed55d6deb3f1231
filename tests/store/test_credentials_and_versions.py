"""Credentials and agent versions in the store: tenant scoping, numbering, one active version."""

from __future__ import annotations

import pytest

from ashd.credentials import Sealed, seal, unseal
from ashd.store import Conflict, Store
from ashd.store.credential_queries import CredentialRow


def sealed_row(tenant: str, row_id: str, secret: str) -> CredentialRow:
    s = seal("master", secret, tenant, row_id)
    return CredentialRow(row_id, tenant, "anthropic", s.encrypted_key, s.iv, s.auth_tag, s.salt, "l", True, "", None)


def test_credentials_are_tenant_scoped_and_touched(store: Store) -> None:
    row = store.add_credential(sealed_row("acme", "c0000000-0000-4000-8000-000000000001", "sk-1"))
    assert row.created_at.endswith("Z") and row.last_used_at is None
    assert store.get_credential("other", row.id) is None and store.list_credentials("other") == []
    assert store.delete_credential("other", row.id) is False
    store.touch_credential("acme", row.id)
    got = store.get_credential("acme", row.id)
    assert got is not None and got.last_used_at is not None and got.active is True
    assert "sk-1" not in repr(got)
    assert unseal("master", Sealed(got.encrypted_key, got.iv, got.auth_tag, got.salt), "acme", got.id) == "sk-1"
    with pytest.raises(Conflict):
        store.add_credential(row)
    assert store.delete_credential("acme", row.id) is True and store.list_credentials("acme") == []


def test_agent_and_prompt_reads_both_in_one_go(store: Store) -> None:
    assert store.agent_and_prompt("acme", "a") == (None, None)
    agent = store.upsert_agent("acme", "a", "/tmp/a", {})
    assert store.agent_and_prompt("acme", "a") == (agent, None)
    v1 = store.create_agent_version("acme", "a", {"system_prompt": "p1"})
    assert store.activate_agent_version("acme", "a", v1.id)
    assert store.agent_and_prompt("acme", "a") == (store.get_agent("acme", "a"), "p1")
    assert store.agent_and_prompt("other", "a") == (None, None)  # another tenant's agent: nothing


def test_versions_number_per_agent_and_activate_one(store: Store) -> None:
    store.upsert_agent("acme", "a", "/tmp/a", {})
    v1 = store.create_agent_version("acme", "a", {"system_prompt": "p1", "knowledge_files": ["k"]}, "key-1")
    v2 = store.create_agent_version("acme", "a", {"name": "two"})
    other = store.create_agent_version("acme", "b", {})
    assert (v1.version_number, v2.version_number, other.version_number) == (1, 2, 1)
    assert (v1.name, v2.name, v1.knowledge_files, v1.created_by) == ("v1", "two", ["k"], "key-1")
    assert store.get_agent_version("acme", "a", 2) == v2 and store.get_agent_version("acme", "a", v1.id) == v1
    assert store.get_agent_version("other", "a", 1) is None
    assert store.active_system_prompt("acme", "a") is None
    assert store.activate_agent_version("acme", "a", v1.id)
    assert store.active_system_prompt("acme", "a") == "p1"
    assert store.activate_agent_version("acme", "a", v2.id)
    assert [v.is_active for v in store.list_agent_versions("acme", "a")] == [False, True]
    agent = store.get_agent("acme", "a")
    assert agent is not None and agent.active_version_id == v2.id
    assert store.active_system_prompt("acme", "a") is None  # v2 has no prompt: CLAUDE.md
    assert not store.activate_agent_version("other", "a", v1.id)
    updated = store.update_agent_version("acme", "a", 2, {"system_prompt": "p2", "knowledge_files": []})
    assert updated is not None and updated.system_prompt == "p2" and updated.knowledge_files == []
    assert store.active_system_prompt("acme", "a") == "p2"
    assert store.delete_agent("acme", "a")
    assert store.list_agent_versions("acme", "a") == [] and len(store.list_agent_versions("acme", "b")) == 1
