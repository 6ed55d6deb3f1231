"""Engine set-up: SQLite pragmas and paths, Postgres reachability, URL handling."""

from __future__ import annotations

import logging
import socket
import sqlite3
from pathlib import Path

import pytest

from ashd.store import Store, StoreError, StoreUnavailable
from ashd.store.engine import backoff_delays, create_engine_for, mask_url, parse_url


def test_sqlite_creates_parent_dirs_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "ashd.db"
    store = Store(f"sqlite:///{path}")
    store.migrate()
    store.close()
    with sqlite3.connect(path) as conn:  # a plain client sees the persistent WAL mode
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_sqlite_connections_get_the_pragmas(tmp_path: Path) -> None:
    engine = create_engine_for(f"sqlite:///{tmp_path / 'ashd.db'}")
    with engine.connect() as conn:
        def pragma(name: str) -> object:
            return conn.exec_driver_sql(f"PRAGMA {name}").scalar()

        assert pragma("foreign_keys") == 1
        assert pragma("busy_timeout") == 5000
        assert pragma("synchronous") == 1  # NORMAL
    engine.dispose()


@pytest.mark.parametrize(
    "url", ["sqlite://", "sqlite:///:memory:", "mysql://u@h/db", "not a url"]
)
def test_unsupported_urls_are_refused(url: str) -> None:
    with pytest.raises(StoreError) as info:
        Store(url)
    assert not isinstance(info.value, StoreUnavailable)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_postgres_raises_with_masked_url(caplog: pytest.LogCaptureFixture) -> None:
    port = _closed_port()
    url = f"postgresql+psycopg://ashd:s3cret@127.0.0.1:{port}/ashd"
    with (
        caplog.at_level(logging.WARNING, logger="ashd.store.engine"),
        pytest.raises(StoreUnavailable) as info,
    ):
        Store(url, connect_retries=2, retry_initial_delay=0.0)
    message = str(info.value)
    assert f"postgresql+psycopg://ashd:***@127.0.0.1:{port}/ashd" in message
    assert "3 attempt(s)" in message
    assert "s3cret" not in message + caplog.text
    retries = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 2


def test_backoff_doubles_from_half_a_second_to_eight() -> None:
    assert backoff_delays(5, 0.5, 8.0) == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert backoff_delays(7, 0.5, 8.0)[-2:] == [8.0, 8.0]


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+psycopg"])
def test_postgres_urls_use_psycopg_3(scheme: str) -> None:
    assert parse_url(f"{scheme}://u@h/db").drivername == "postgresql+psycopg"


def test_mask_url_hides_only_the_password() -> None:
    masked = mask_url("postgresql+psycopg://u:pw@db:5432/ashd")
    assert masked == "postgresql+psycopg://u:***@db:5432/ashd"


def test_store_reports_dialect_and_masked_url(store: Store, db_url: str) -> None:
    assert store.dialect == db_url.split(":")[0].split("+")[0]
    assert store.url_masked == mask_url(db_url)
