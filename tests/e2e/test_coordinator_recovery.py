"""Two coordinators on one Postgres recover only each other's work once it is gone (issue #11).

Real coordinator processes. The eval runs and queue items are rows claimed the way each
coordinator's eval runner and queue worker claim them (``claimed_by`` = its ``coordinatorId``).
B restarting leaves A's in-flight work alone (A still holds its liveness lock) and recovers
the work of a coordinator that is gone; once A is killed, B's periodic pass recovers A's.
"""

from __future__ import annotations

import signal
import time

import httpx
import pytest
import sqlalchemy as sa

from ashd.store import Store
from ashd.store import queue_queries as qq
from tests.e2e.test_runners import Cluster, cluster, pg_url, wait_for  # noqa: F401 (fixtures)
from tests.store.test_coordinators import claim_work, state
from tests.support.daemon import AshdProcess

pytestmark = pytest.mark.e2e


def coordinator_id(daemon: AshdProcess) -> str:
    return str(httpx.get(f"{daemon.url}/health", headers=daemon.headers, timeout=30).json()["coordinatorId"])


def released(store: Store, item_id: str, owner: str) -> bool:
    """The queue item is no longer held ``processing`` by ``owner`` (requeued; maybe claimed again)."""
    row = store.read_with(lambda conn: conn.execute(
        sa.select(qq.queue_items.c.status, qq.queue_items.c.claimed_by).where(qq.queue_items.c.id == item_id)).one())
    return not (row.status == "processing" and row.claimed_by == owner)


def test_a_restart_leaves_a_live_coordinators_work_and_recovers_a_dead_ones(
        cluster: Cluster) -> None:  # noqa: F811
    first, second = cluster.coordinator(), cluster.coordinator()
    a_id = coordinator_id(first)
    store = Store(cluster.database_url)
    try:
        theirs = claim_work(store, a_id)
        gone = claim_work(store, "host-of-the-past-4242")  # a coordinator that is no longer running

        # The gone one's work is recovered by whichever coordinator passes first.
        wait_for("the gone coordinator's work recovered", lambda: state(store, *gone)[0] == "interrupted")
        assert released(store, gone[1], "host-of-the-past-4242")
        assert any("coordinator host-of-the-past-4242, which is gone: 1 eval run(s) marked interrupted"
                   in daemon.log(None) for daemon in (first, second))

        second.stop()
        again = cluster.coordinator()  # a restart: A's work stays A's
        time.sleep(3)  # several of its periodic passes (every ~0.8 s with the test's 3 s liveness timeout)
        assert state(store, *theirs) == ("running", "processing")
        assert a_id not in again.log(None)

        first.stop(signal.SIGKILL)  # Postgres drops A's connection and with it its liveness lock
        killed_at = time.monotonic()
        wait_for("A's eval run interrupted by B", lambda: state(store, *theirs)[0] == "interrupted")
        print(f"A's work recovered {time.monotonic() - killed_at:.2f}s after SIGKILL")
        assert released(store, theirs[1], a_id)  # pending again (or already taken by B's queue worker)
        assert f"coordinator {a_id}, which is gone: 1 eval run(s) marked interrupted, 1 queued prompt(s)" \
            in again.log(None)
    finally:
        store.close()
