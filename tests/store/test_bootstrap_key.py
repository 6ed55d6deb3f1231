"""The bootstrap key: minted once, and the operator's on every later start (SQLite and Postgres)."""

from __future__ import annotations

from pathlib import Path

from ashd.config import AuthConfig
from ashd.http import scopes
from ashd.http.auth import DEFAULT_TENANT, KeyHasher, bootstrap_key
from ashd.store import Store


def test_first_start_writes_an_operator_key_and_later_starts_do_not(store: Store, tmp_path: Path) -> None:
    hasher, key_file = KeyHasher(AuthConfig()), tmp_path / "initial-api-key"
    assert bootstrap_key(store, hasher, key_file, env_key_set=False) == key_file
    assert key_file.stat().st_mode & 0o777 == 0o600
    row = store.find_api_key(hasher.hashes(key_file.read_text().strip())[0])
    assert row is not None and scopes.parse(row.scopes) == scopes.OPERATOR
    assert bootstrap_key(store, hasher, key_file, env_key_set=False) is None
    assert store.count_api_keys(DEFAULT_TENANT) == 1


def test_a_bootstrap_key_of_an_older_ashd_gets_the_operator_grants(store: Store, tmp_path: Path) -> None:
    hasher, key_file = KeyHasher(AuthConfig()), tmp_path / "initial-api-key"
    bootstrap_key(store, hasher, key_file, env_key_set=False)
    row = store.find_api_key(hasher.hashes(key_file.read_text().strip())[0])
    assert row is not None
    store.set_api_key_scopes(row.id, "admin")  # what ashd wrote before deploy-path existed
    other = store.add_api_key(DEFAULT_TENANT, "f" * 64, "minted by the tenant", "admin")
    assert bootstrap_key(store, hasher, key_file, env_key_set=False) is None
    upgraded = store.find_api_key(row.key_hash)
    assert upgraded is not None and scopes.parse(upgraded.scopes) == scopes.OPERATOR
    untouched = store.find_api_key(other.key_hash)
    assert untouched is not None and untouched.scopes == "admin"


def test_the_bootstrap_key_has_a_prefix_and_one_of_an_older_ashd_gets_it(store: Store, tmp_path: Path,
                                                                         db_url: str) -> None:
    import sqlalchemy as sa

    from ashd.store.schema import api_keys

    hasher, key_file = KeyHasher(AuthConfig()), tmp_path / "initial-api-key"
    bootstrap_key(store, hasher, key_file, env_key_set=False)
    key = key_file.read_text().strip()
    row = store.find_api_key(hasher.hashes(key)[0])
    assert row is not None and row.key_prefix == key[:8] and key.startswith(row.key_prefix)
    assert row.created_at.endswith("Z")
    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as conn:  # a key minted before 0006: no prefix stored
            conn.execute(sa.update(api_keys).values(key_prefix=None))
    finally:
        engine.dispose()
    assert store.list_api_keys(DEFAULT_TENANT)[0].key_prefix is None
    bootstrap_key(store, hasher, key_file, env_key_set=False)
    assert store.list_api_keys(DEFAULT_TENANT)[0].key_prefix == key[:8]
