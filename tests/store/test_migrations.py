"""Schema migrations: from empty, idempotent, reversible, and equal to schema.py."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine

from ashd.store import Store
from ashd.store import migrate as migrations
from ashd.store.engine import create_engine_for
from ashd.store.schema import metadata

TABLES = {"runners", "agents", "sessions", "sandboxes", "messages", "session_events", "api_keys",
          "stream_events", "transcript_entries", "usage_events",
          "credentials", "agent_versions", "attachments", "queue_items",
          "eval_cases", "eval_runs", "eval_results"}


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = create_engine_for(db_url)
    yield engine
    engine.dispose()


def _tables(engine: Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def test_migrate_from_empty_creates_every_table(empty_store: Store, engine: Engine) -> None:
    assert _tables(engine) == set()
    empty_store.migrate()
    assert _tables(engine) == TABLES | {"alembic_version"}
    assert migrations.current_revision(engine) == migrations.HEAD


def test_migrate_again_is_a_no_op_that_keeps_data(store: Store, engine: Engine) -> None:
    store.add_api_key("default", "hash-1", "first")
    store.migrate()
    assert migrations.current_revision(engine) == migrations.HEAD
    assert store.find_api_key("hash-1") is not None


def test_migration_matches_schema_module(store: Store, engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


def test_downgrade_to_base_then_upgrade(store: Store, engine: Engine) -> None:
    migrations.downgrade(engine, "base")
    assert _tables(engine) == {"alembic_version"}
    assert migrations.current_revision(engine) is None
    store.migrate()
    assert _tables(engine) == TABLES | {"alembic_version"}


def test_concurrent_migrations_both_succeed(empty_store: Store, engine: Engine) -> None:
    start = threading.Barrier(2)
    errors: list[Exception] = []

    def run() -> None:
        start.wait(timeout=10)
        try:
            empty_store.migrate()
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert migrations.current_revision(engine) == migrations.HEAD


def test_comparison_detects_a_drifted_schema(store: Store, engine: Engine) -> None:
    drifted = sa.MetaData()
    for table in metadata.sorted_tables:
        table.to_metadata(drifted)
    drifted.tables["agents"].append_column(sa.Column("extra", sa.Text()))
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), drifted)
    assert [d[0] for d in diff] == ["add_column"]
