"""Agents: upsert versioning, atomic concurrent upserts, isolation, cascading delete."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from ashd.store import AgentRow, Store


def test_first_upsert_is_version_one(store: Store) -> None:
    agent = store.upsert_agent("t1", "qa", "/data/agents/qa", {"K": "v"}, {"model": "m"})
    assert (agent.version, agent.path, agent.env, agent.config) == (
        1, "/data/agents/qa", {"K": "v"}, {"model": "m"}
    )
    assert agent.created_at == agent.updated_at
    assert agent.active_version_id is None
    assert store.get_agent("t1", "qa") == agent


def test_upsert_bumps_version_and_keeps_identity(store: Store) -> None:
    first = store.upsert_agent("t1", "qa", "/v1", {"A": "1"}, {"model": "m"})
    second = store.upsert_agent("t1", "qa", "/v2", {"B": "2"})
    assert second.version == 2
    assert (second.id, second.created_at) == (first.id, first.created_at)
    assert (second.path, second.env) == ("/v2", {"B": "2"})
    assert second.config == {"model": "m"}  # kept: no config given
    assert second.updated_at > first.updated_at
    third = store.upsert_agent("t1", "qa", "/v3", {}, {"model": "other"})
    assert (third.version, third.config) == (3, {"model": "other"})
    assert store.get_agent("t1", "qa") == third


def test_set_agent_config_keeps_version(store: Store) -> None:
    store.upsert_agent("t1", "qa", "/v1", {})
    updated = store.set_agent_config("t1", "qa", {"a": [1, 2]})
    assert updated is not None
    assert (updated.version, updated.config) == (1, {"a": [1, 2]})
    assert store.set_agent_config("t2", "qa", {}) is None


def test_concurrent_upserts_of_one_name_get_distinct_versions(store: Store) -> None:
    workers = 8
    start = threading.Barrier(workers)

    def deploy(i: int) -> AgentRow:
        start.wait(timeout=10)
        return store.upsert_agent("t1", "qa", f"/v{i}", {"I": str(i)})

    with ThreadPoolExecutor(workers) as pool:
        rows = list(pool.map(deploy, range(workers)))
    assert sorted(r.version for r in rows) == list(range(1, workers + 1))
    assert len({r.id for r in rows}) == 1
    assert [a.version for a in store.list_agents("t1")] == [workers]


def test_reads_never_cross_tenants(store: Store) -> None:
    store.upsert_agent("t1", "qa", "/t1", {})
    store.upsert_agent("t2", "qa", "/t2", {})
    store.upsert_agent("t2", "writer", "/t2w", {})
    assert store.get_agent("t1", "writer") is None
    assert [(a.tenant_id, a.name) for a in store.list_agents("t1")] == [("t1", "qa")]
    assert [a.name for a in store.list_agents("t2")] == ["qa", "writer"]
    assert store.list_agents("t3") == []


def test_list_agents_is_ordered_by_name(store: Store) -> None:
    for name in ("zeta", "alpha", "mid"):
        store.upsert_agent("t1", name, f"/{name}", {})
    assert [a.name for a in store.list_agents("t1")] == ["alpha", "mid", "zeta"]


def test_delete_agent_cascades_to_its_sessions_only(store: Store) -> None:
    store.upsert_agent("t1", "qa", "/qa", {})
    store.upsert_agent("t1", "keep", "/keep", {})
    store.upsert_agent("t2", "qa", "/qa2", {})
    for tenant, sid, agent in (("t1", "s-qa", "qa"), ("t1", "s-keep", "keep"),
                               ("t2", "s-other", "qa")):
        store.create_session(tenant, sid, agent, "active")
        store.append_message(tenant, sid, "user", "hi")
        store.append_event(tenant, sid, "message", "{}")

    assert store.delete_agent("t1", "qa") is True
    assert store.get_agent("t1", "qa") is None
    assert store.get_session_any_tenant("s-qa") is None
    assert store.list_messages("t1", "s-qa") == []
    assert store.list_events("t1", "s-qa") == []
    for tenant, sid in (("t1", "s-keep"), ("t2", "s-other")):
        assert store.get_session(tenant, sid) is not None
        assert len(store.list_messages(tenant, sid)) == 1
        assert len(store.list_events(tenant, sid)) == 1
    assert store.get_agent("t2", "qa") is not None
    assert store.delete_agent("t1", "qa") is False
