"""Agent folders reach runners over the link in bounded chunks (issue #11, loose ends): a
coordinator and a runner as real ashd processes on Postgres. An agent too large to ship is
refused on create with a clear 413, at once (not a hang, not a retry loop); one of several
chunks arrives whole."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest

from ashd.sandbox import agent_cache
from tests.e2e.test_remote_sessions import send
from tests.e2e.test_runners import FAST, Cluster, cluster, pg_url, runners, wait_for  # noqa: F401 (fixtures)

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024


def agent_folder(root: Path, random_bytes: int) -> Path:
    root.mkdir()
    (root / "CLAUDE.md").write_text("You are a test agent with data.")
    (root / "data.bin").write_bytes(os.urandom(random_bytes))  # incompressible: packs to about its size
    return root


def test_a_too_large_agent_is_refused_on_create_and_a_chunked_one_arrives_whole(
        cluster: Cluster, tmp_path: Path) -> None:  # noqa: F811
    coordinator = cluster.coordinator()
    cluster.runner(coordinator.url, "r1", **FAST)
    wait_for("r1 registered", lambda: runners(coordinator).get("r1"))
    big = agent_folder(tmp_path / "big-agent", agent_cache.MAX_ARCHIVE_BYTES + MiB)
    medium = agent_folder(tmp_path / "medium-agent", 9 * MiB)
    with httpx.Client(base_url=coordinator.url, headers=coordinator.headers, timeout=180) as api:
        assert api.post("/api/agents", json={"name": "big", "path": str(big)}).status_code == 201
        assert api.post("/api/agents", json={"name": "medium", "path": str(medium)}).status_code == 201

        asked = time.monotonic()
        refused = wait_for("the create refused (503 until the link to r1 is up)",
                           lambda: (r := api.post("/api/sessions", json={"agent": "big"})).status_code != 503 and r)
        assert refused.status_code == 413, refused.text
        assert "over the 32 MiB an agent shipped to runners may take" in refused.json()["error"]
        assert time.monotonic() - asked < 90
        assert "shipped to runner r1" not in coordinator.log(None)  # nothing was sent

        made = api.post("/api/sessions", json={"agent": "medium"})
        assert made.status_code == 201, made.text
        sid = made.json()["session"]["id"]
        assert "agent medium (" in coordinator.log(None) and "shipped to runner r1" in coordinator.log(None)
        listed = next(d for n, d in send(api, sid, "[[bash: wc -c < data.bin]]") if n == "tool_result")
        assert str(9 * MiB) in listed["content"], listed
