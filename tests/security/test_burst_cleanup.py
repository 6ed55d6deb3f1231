"""Issue #18 item 4: a burst of creates whose starts are killed (a readiness timeout far too
short for the real CLI) or refused (the start queue is full) leaves nothing on the host: no
cgroup, mount, loop device, uid lease, process, run dir or sandbox folder.

Real daemon with the isolating launcher (bwrap, uids, cgroups, disk images); needs root.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import HELLO_AGENT
from tests.security.test_failed_creates import leftovers
from tests.support.daemon import AshdProcess

if os.geteuid() != 0:
    pytest.skip("needs root (the isolating launcher)", allow_module_level=True)


@pytest.fixture
def mount_root() -> Iterator[Path]:
    root = Path(f"/run/ashd-test-burst-{uuid.uuid4().hex[:8]}")
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_a_burst_of_killed_and_refused_starts_leaves_nothing_behind(
        start_ashd: Callable[..., AshdProcess], mount_root: Path) -> None:
    daemon = start_ashd(None, ASH_SANDBOX_MOUNT_ROOT=str(mount_root), ASH_BRIDGE_READY_TIMEOUT_S="0.1",
                        ASH_RESTART_INTENSITY="1", ASH_RESTART_BACKOFF_BASE_S="0.05",
                        ASH_MAX_CONCURRENT_STARTS="2", ASH_MAX_QUEUED_STARTS="3",
                        ASH_RATE_LIMIT_SESSIONS="0", ASH_RATE_LIMIT_GLOBAL="0")
    with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=300) as api:
        api.post("/api/agents", json={"name": "hello", "path": str(HELLO_AGENT)}).raise_for_status()
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda _: api.post("/api/sessions", json={"agent": "hello"}).status_code,
                                     range(8)))
        assert 503 in statuses, statuses  # some refused by the full start queue
        # The others were queued (201 at once) or ran: killed at their readiness deadline, a
        # create answers 201 once its start is retried (slow is not a crash), or 502 if given up.
        assert set(statuses) <= {201, 502, 503}, statuses
        sessions = api.get("/api/sessions").json()["sessions"]
        for session in sessions:
            if session["status"] != "error":  # a start quick enough to make it: end it
                api.delete(f"/api/sessions/{session['id']}").raise_for_status()
        for session in sessions:
            assert leftovers(daemon, mount_root, session["id"]) == [], session
        assert list((daemon.data_dir / "sandboxes").iterdir()) == []
        assert [p for p in mount_root.glob("*/*") if p.name != "uids"] == []  # no run dir of any sandbox
        health = api.get("/health")
        assert health.status_code == 200
    log = daemon.log(None)
    assert "not ready within 0.1s" in log  # the kills were the readiness timeout we planted
    assert "restart budget" not in log  # slow starts never spent a budget
