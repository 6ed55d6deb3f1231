"""ashd/service_children.py: the store and the sandbox services as the root's first children."""

from __future__ import annotations

import shutil
from pathlib import Path

from ashd.sandbox.services import Services
from ashd.service_children import services_child, store_child
from ashd.store import Store


class Recorder:
    def __init__(self) -> None:
        self.steps: list[str] = []


def test_the_store_answers_its_ping_and_drains_before_it_closes(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'ash.db'}")
    store.migrate()
    seen = Recorder()
    child = store_child(store, lambda: seen.steps.append("drained"))
    handle = child.start(lambda detail: None)
    assert child.ping(handle, 1.0) is True
    original_close = store.close
    store.close = lambda: (seen.steps.append("closed"), original_close())[1]  # type: ignore[method-assign]
    assert child.stop(handle, 1.0) is True
    assert seen.steps == ["drained", "closed"]
    assert child.restartable is False


def test_a_store_that_cannot_answer_fails_its_ping(tmp_path: Path) -> None:
    folder = tmp_path / "db"
    folder.mkdir()
    store = Store(f"sqlite:///{folder / 'ash.db'}")
    store.migrate()
    store.close()  # no pooled connection left to reuse
    shutil.rmtree(folder)  # the database's folder is gone: a new connection cannot open it
    child = store_child(store, lambda: None)
    assert child.ping(child.start(lambda detail: None), 1.0) is False


def test_a_failing_drain_still_closes_the_store(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'ash.db'}")

    def drain() -> None:
        raise TimeoutError("turns still running")

    assert store_child(store, drain).stop(store, 1.0) is True


def test_sandbox_services_ping_their_proxies_and_stop_once() -> None:
    stops: list[int] = []
    answering = Services(launcher=None, report=None, _closers=[lambda: stops.append(1)],  # type: ignore[arg-type]
                         _ping=lambda timeout_s: False)
    child = services_child(answering)
    handle = child.start(lambda detail: None)
    assert child.ping(handle, 1.0) is False  # the proxies' loop did not answer
    assert child.stop(handle, 1.0) is True
    answering.stop()  # idempotent: the daemon's fallback may call it again
    assert stops == [1]
    without_proxies = services_child(Services(None, None))  # type: ignore[arg-type]
    assert without_proxies.ping(without_proxies.start(lambda detail: None), 1.0) is True
