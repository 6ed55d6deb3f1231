"""Finished prompt-queue items are removed after their time (queue_queries.prune_finished)."""

from __future__ import annotations

from ashd.store import Store
from ashd.store import queue_queries as qq
from tests.store.conftest import FakeClock


def claim(store: Store) -> str:
    item = store.claim_queue_item("coord-a")
    assert item is not None
    return item.id


def test_only_items_finished_before_the_cutoff_are_removed_in_batches(store: Store, clock: FakeClock) -> None:
    ids = [store.enqueue(qq.NewItem("default", "bot", f"prompt {n}")).id for n in range(6)]
    completed, failed = claim(store), claim(store)
    assert store.finish_queue_item(completed, "completed", claimed_by="coord-a")
    assert store.finish_queue_item(failed, "failed", error="no", claimed_by="coord-a")
    assert store.cancel_queue_item("default", ids[2])
    processing = claim(store)  # claimed before the cutoff, never finished
    cutoff = clock()
    late = claim(store)
    assert store.finish_queue_item(late, "completed", claimed_by="coord-a")  # finished after the cutoff
    assert [completed, failed, processing, late] == [ids[0], ids[1], ids[3], ids[4]]

    assert store.write_with(qq.prune_finished, cutoff, 2) == 2
    assert store.write_with(qq.prune_finished, cutoff, 2) == 1
    assert store.write_with(qq.prune_finished, cutoff, 2) == 0
    left = {item.id: item.status for item in store.list_queue_items("default", limit=50)}
    assert left == {ids[3]: "processing", ids[4]: "completed", ids[5]: "pending"}
    assert store.queue_stats("default") == {"pending": 1, "processing": 1, "completed": 1, "failed": 0,
                                            "cancelled": 0}
