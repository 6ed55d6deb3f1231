"""The prompt queue through a real ashd: queued prompts become stored turns; retries; cancel."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import HELLO_AGENT
from tests.support.daemon import AshdProcess

pytestmark = pytest.mark.e2e

SECRET = "internal-secret-for-queue-tests"
FAST = {"ASH_QUEUE_RETRY_DELAY_S": "0.2", "ASH_QUEUE_POLL_INTERVAL_S": "0.2", "ASH_INTERNAL_SECRET": SECRET}


def wait_item(c: httpx.Client, item_id: str, statuses: tuple[str, ...], timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        item = c.get(f"/api/queue/{item_id}").json()["item"]
        if item["status"] in statuses:
            return dict(item)
        time.sleep(0.2)
    raise AssertionError(f"item {item_id} never reached {statuses}: {item}")


def deploy(c: httpx.Client) -> None:
    c.post("/api/agents", json={"name": "hello", "path": str(HELLO_AGENT)}).raise_for_status()


def test_queued_prompt_completes_and_failing_one_is_retried_then_failed(
        database_url: str | None, start_ashd: Callable[..., AshdProcess]) -> None:
    # database_url first: the database outlives the daemon (dropped after it stopped).
    daemon = start_ashd(database_url, **FAST)
    with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=60) as c:
        deploy(c)
        r = c.post("/api/queue", json={"agentName": "hello", "prompt": "[[say: queued hello-7]]"})
        assert r.status_code == 201, r.text
        item = r.json()["item"]
        assert item["status"] in ("pending", "processing") and item["retryCount"] == 0 and item["maxRetries"] == 3
        done = wait_item(c, item["id"], ("completed", "failed"))
        assert done["status"] == "completed", done
        assert done["sessionId"] and done["completedAt"] and done["error"] is None
        messages = c.get(f"/api/sessions/{done['sessionId']}/messages").json()["messages"]
        assert any("queued hello-7" in m["content"] and m["role"] == "assistant" for m in messages)
        stream = c.get(f"/api/sessions/{done['sessionId']}/stream").text  # stored and replayable
        assert "event: done" in stream and "queued hello-7" in stream

        # Into the same session, while it is paused: resumed, then the turn runs there.
        c.post(f"/api/sessions/{done['sessionId']}/pause").raise_for_status()
        again = c.post("/api/queue", json={"agentName": "hello", "prompt": "[[echo-history]]",
                                           "sessionId": done["sessionId"]}).json()["item"]
        second = wait_item(c, again["id"], ("completed", "failed"))
        assert second["status"] == "completed" and second["sessionId"] == done["sessionId"]
        last = c.get(f"/api/sessions/{done['sessionId']}/messages").json()["messages"][-1]
        assert "queued hello-7" in json.loads(last["content"])["result"]

        bad = c.post("/api/queue", json={"agentName": "hello", "prompt": "[[error: 403 scripted denial]]",
                                         "maxRetries": 2}).json()["item"]
        failed = wait_item(c, bad["id"], ("completed", "failed"))
        assert failed["status"] == "failed" and failed["retryCount"] == 2, failed
        assert "scripted denial" in failed["error"]
        stats = c.get("/api/queue/stats").json()["stats"]
        assert stats == {"pending": 0, "processing": 0, "completed": 2, "failed": 1, "cancelled": 0}
        listed = c.get("/api/queue", params={"status": "failed"}).json()["items"]
        assert [i["id"] for i in listed] == [bad["id"]]
    assert daemon.log(tail=None).count(f"queue item {bad['id']} failed (") == 2  # two retries logged


def test_cancel_priority_isolation_and_bad_input(start_ashd: Callable[..., AshdProcess]) -> None:
    daemon = start_ashd(None, ASH_QUEUE_WORKERS="0", **{k: v for k, v in FAST.items()})  # nothing runs
    with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=60) as c:
        deploy(c)
        low = c.post("/api/queue", json={"agentName": "hello", "prompt": "low"}).json()["item"]
        high = c.post("/api/queue", json={"agentName": "hello", "prompt": "high", "priority": 5}).json()["item"]
        assert [i["id"] for i in c.get("/api/queue").json()["items"]] == [high["id"], low["id"]]
        cancelled = c.delete(f"/api/queue/{low['id']}")
        assert cancelled.status_code == 200 and cancelled.json()["item"]["status"] == "cancelled"
        again = c.delete(f"/api/queue/{low['id']}")
        assert again.status_code == 409 and "cancelled" in again.json()["error"]
        assert c.get("/api/queue/stats").json()["stats"]["cancelled"] == 1

        minted = httpx.post(f"{daemon.url}/api/internal/api-keys", json={"tenantId": "other"},
                            headers={"Authorization": f"Bearer {SECRET}"})
        assert minted.status_code == 201, minted.text
        other = {"Authorization": f"Bearer {minted.json()['key']}"}
        assert c.get(f"/api/queue/{high['id']}", headers=other).status_code == 404
        assert c.delete(f"/api/queue/{high['id']}", headers=other).status_code == 404
        assert c.get("/api/queue", headers=other).json()["items"] == []
        assert c.get("/api/queue/stats", headers=other).json()["stats"]["pending"] == 0
        # Another tenant has no agent "hello" and cannot queue into this tenant's sessions.
        assert c.post("/api/queue", headers=other, json={"agentName": "hello", "prompt": "x"}).status_code == 404

        for body in ({}, {"agentName": "hello"}, {"agentName": "hello", "prompt": ""},
                     {"agentName": "hello", "prompt": 5}, {"agentName": "bad name", "prompt": "x"},
                     {"agentName": "hello", "prompt": "x", "maxRetries": 11},
                     {"agentName": "hello", "prompt": "x", "maxRetries": -1},
                     {"agentName": "hello", "prompt": "x", "priority": 1.5},
                     {"agentName": "hello", "prompt": "x", "priority": True},
                     {"agentName": "hello", "prompt": "x", "sessionId": "nope"},
                     {"agentName": "hello", "prompt": "x", "colour": "red"}):
            r = c.post("/api/queue", json=body)
            assert r.status_code == 400 and r.json()["statusCode"] == 400, (body, r.text)
        missing = "00000000-0000-4000-8000-000000000000"
        assert c.post("/api/queue", json={"agentName": "hello", "prompt": "x", "sessionId": missing}).status_code == 404
        assert c.get("/api/queue/not-a-uuid").status_code == 400
        assert c.get(f"/api/queue/{missing}").status_code == 404
        assert c.get("/api/queue", params={"limit": 501}).status_code == 400
        assert c.get("/api/queue", params={"status": "weird"}).status_code == 400


def test_a_tenant_holds_at_most_its_waiting_prompts(start_ashd: Callable[..., AshdProcess]) -> None:
    daemon = start_ashd(None, ASH_QUEUE_WORKERS="0", ASH_QUEUE_MAX_WAITING="2", **FAST)  # nothing runs
    with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=60) as c:
        deploy(c)
        first, _ = (c.post("/api/queue", json={"agentName": "hello", "prompt": p}) for p in ("one", "two"))
        assert first.status_code == 201
        full = c.post("/api/queue", json={"agentName": "hello", "prompt": "three"})
        assert full.status_code == 429 and "ASH_QUEUE_MAX_WAITING" in full.json()["error"]
        assert full.headers["Retry-After"] == "30" and c.get("/api/queue/stats").json()["stats"]["pending"] == 2
        c.delete(f"/api/queue/{first.json()['item']['id']}").raise_for_status()
        assert c.post("/api/queue", json={"agentName": "hello", "prompt": "three"}).status_code == 201


def test_finished_items_go_after_their_time_and_waiting_ones_stay(start_ashd: Callable[..., AshdProcess]) -> None:
    daemon = start_ashd(None, ASH_QUEUE_WORKERS="0", ASH_QUEUE_KEEP_FINISHED_S="1", **FAST)  # nothing runs
    with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=60) as c:
        deploy(c)
        waiting, done = (c.post("/api/queue", json={"agentName": "hello", "prompt": p}).json()["item"]
                         for p in ("waits", "cancelled"))
        c.delete(f"/api/queue/{done['id']}").raise_for_status()
        deadline = time.monotonic() + 30
        while c.get(f"/api/queue/{done['id']}").status_code != 404:
            assert time.monotonic() < deadline, "a cancelled item was kept past queue.keep_finished_s"
            time.sleep(0.2)
        assert c.get("/api/queue/stats").json()["stats"] == {"pending": 1, "processing": 0, "completed": 0,
                                                            "failed": 0, "cancelled": 0}
        assert c.get(f"/api/queue/{waiting['id']}").json()["item"]["status"] == "pending"
    assert "prompt queue: removed 1 item(s) that finished over 1s ago" in daemon.log(None)
