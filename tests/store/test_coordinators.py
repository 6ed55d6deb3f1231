"""Recovering the work of coordinators that are gone (ashd/store/coordinators.py, recovery.py).

On Postgres a coordinator is alive while it holds its liveness lock: another recovers its
eval runs and queue items only once the lock is free. On SQLite one daemon owns the database:
everything is recovered at its start, nothing later.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from ashd.store import Store, StoreError
from ashd.store import eval_queries as q
from ashd.store import queue_queries as qq
from ashd.store.coordinators import lock_key
from ashd.store.recovery import recover_claimed_work


def claim_work(store: Store, owner: str | None) -> tuple[str, str]:
    """A running eval run and a processing queue item claimed by ``owner``, as its eval
    runner and queue worker record them."""
    run = store.write_with(q.add_run, "default", "bot", None, "{}", [], store.now(), owner)
    item = store.enqueue(qq.NewItem("default", "bot", "hi"))
    store.write_with(lambda conn: conn.execute(sa.update(qq.queue_items).where(qq.queue_items.c.id == item.id)
                                               .values(status="processing", claimed_by=owner)))
    return run.id, item.id


def state(store: Store, run_id: str, item_id: str) -> tuple[str, str]:
    run = store.read_with(q.get_run, "default", "bot", run_id)
    item = store.get_queue_item("default", item_id)
    assert run is not None and item is not None
    return run.status, item.status


def test_lock_keys_are_stable_and_distinct() -> None:
    assert lock_key("host-1") == lock_key("host-1") != lock_key("host-2")
    assert -2**63 <= lock_key("host-1") < 2**63


def test_the_queue_worker_records_its_claim(store: Store) -> None:
    store.enqueue(qq.NewItem("default", "bot", "hi"))
    claimed = store.claim_queue_item("coord-a")
    assert claimed is not None
    stored = store.read_with(lambda conn: conn.execute(sa.select(qq.queue_items.c.claimed_by)).scalar_one())
    assert stored == "coord-a"


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # liveness locks are Postgres's
def test_only_the_work_of_gone_coordinators_is_recovered_on_postgres(store: Store) -> None:
    assert store.dialect == "postgresql"
    alive = store.coordinator_lock("coord-a")
    assert alive is not None
    alive.acquire()
    try:
        theirs = claim_work(store, "coord-a")
        gone = claim_work(store, "coord-gone")
        mine_before = claim_work(store, "coord-b")  # a previous process with this id
        legacy = claim_work(store, None)  # claimed before claims were recorded

        later = recover_claimed_work(store, "coord-b", starting=False)
        assert later.by_owner == {"coord-gone": (1, 1)}
        assert state(store, *gone) == ("interrupted", "pending")
        assert state(store, *theirs) == ("running", "processing")  # alive: untouched
        assert state(store, *mine_before) == ("running", "processing")  # only at start
        run = store.read_with(q.get_run, "default", "bot", gone[0])
        assert run is not None and run.error == "coordinator coord-gone stopped while the run was in progress"

        at_start = recover_claimed_work(store, "coord-b", starting=True)
        assert at_start.by_owner == {"coord-b": (2, 2)}  # its own and the unclaimed
        assert state(store, *mine_before) == state(store, *legacy) == ("interrupted", "pending")
        assert state(store, *theirs) == ("running", "processing")

        twin = store.coordinator_lock("coord-a")
        assert twin is not None
        with pytest.raises(StoreError, match="held by another live process"):
            twin.acquire()
        assert alive.check()
    finally:
        alive.release()
    assert recover_claimed_work(store, "coord-b", starting=False).by_owner == {"coord-a": (1, 1)}
    assert state(store, *theirs) == ("interrupted", "pending")
    # Claimed again by B: A (cut off, say, and back) can no longer settle it.
    store.write_with(lambda conn: conn.execute(sa.update(qq.queue_items).where(qq.queue_items.c.id == theirs[1])
                                               .values(status="processing", claimed_by="coord-b")))
    assert not store.finish_queue_item(theirs[1], "completed", claimed_by="coord-a")
    assert not store.retry_queue_item(theirs[1], 1, store.now(), "x", claimed_by="coord-a")
    assert store.finish_queue_item(theirs[1], "completed", claimed_by="coord-b")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_one_daemon_on_sqlite_recovers_everything_at_start_only(store: Store) -> None:
    assert store.dialect == "sqlite"
    assert store.coordinator_lock("coord-a") is None
    work = claim_work(store, "coord-a")
    assert recover_claimed_work(store, "coord-b", starting=False).by_owner == {}
    assert state(store, *work) == ("running", "processing")
    assert recover_claimed_work(store, "coord-b", starting=True).by_owner == {None: (1, 1)}
    assert state(store, *work) == ("interrupted", "pending")
