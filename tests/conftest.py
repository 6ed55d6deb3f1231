"""Shared fixtures: the scripted model, backends, and a running ashd daemon."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ashd.scripted.server import ScriptedModel
from tests.store.pg import backend_database
from tests.support.daemon import AshdProcess, remove_socket_dirs

REPO = Path(__file__).resolve().parents[1]
HELLO_AGENT = REPO / "examples" / "hello-agent"


@pytest.fixture(scope="session", autouse=True)
def socket_dirs_removed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """At the end of the run, the /tmp socket directories of every data dir it made."""
    yield
    remove_socket_dirs(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def scripted_model() -> Iterator[ScriptedModel]:
    model = ScriptedModel()
    model.start()
    yield model
    model.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None for the default (SQLite under the data dir), else a fresh Postgres database."""
    with backend_database(request.param) as url:
        yield url


@pytest.fixture
def start_ashd(tmp_path: Path, scripted_model: ScriptedModel) -> Iterator[Callable[..., AshdProcess]]:
    """Factory: start a real ashd; every one started is stopped (SIGTERM) at teardown."""
    started: list[AshdProcess] = []

    def start(database_url: str | None = None, **extra_env: str) -> AshdProcess:
        data = tmp_path / f"data{len(started)}"
        daemon = AshdProcess(data, scripted_model.base_url, database_url, extra_env)
        started.append(daemon)
        return daemon.start()

    yield start
    for daemon in started:
        daemon.stop()


@pytest.fixture
def ashd(start_ashd: Callable[..., AshdProcess], database_url: str | None) -> AshdProcess:
    """A running ashd on each backend (SQLite and Postgres)."""
    return start_ashd(database_url)


@pytest.fixture
def ashd_sqlite(start_ashd: Callable[..., AshdProcess]) -> AshdProcess:
    return start_ashd(None)
