"""What one tenant may hold of a shared ashd: agents (agents.max_per_tenant)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.conftest import HELLO_AGENT
from tests.support.daemon import AshdProcess

pytestmark = pytest.mark.e2e


def test_a_tenant_deploys_at_most_its_agents(start_ashd: Callable[..., AshdProcess]) -> None:
    daemon = start_ashd(None, ASH_MAX_AGENTS="2", ASH_PREWARM_PER_AGENT="0")
    with httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=60) as c:
        def deploy(name: str) -> httpx.Response:
            return c.post("/api/agents", json={"name": name, "path": str(HELLO_AGENT)})

        assert deploy("a").status_code == 201 and deploy("b").status_code == 201
        assert deploy("a").status_code == 201  # a redeploy is no new agent
        over = deploy("c")
        assert over.status_code == 409 and "ASH_MAX_AGENTS" in over.json()["error"], over.text
        assert sorted(a["name"] for a in c.get("/api/agents").json()["agents"]) == ["a", "b"]
        assert c.delete("/api/agents/b").status_code in (200, 204)
        assert deploy("c").status_code == 201
