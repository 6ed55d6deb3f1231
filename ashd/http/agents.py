"""/api/agents: deploy (by server path or upload), list, get, delete."""

from __future__ import annotations

import shutil
from typing import Any

from ashd.deploy import parse_files, write_agent_folder
from ashd.errors import BadRequest, Conflict, NotFound
from ashd.files import agent_path
from ashd.http import scopes
from ashd.http.base import ApiHandler
from ashd.http.keyed_locks import KeyedLocks
from ashd.http.views import agent_json
from ashd.options import check_agent_name
from ashd.states import SessionStatus
from ashd.store import AgentRow
from ashd.user_env import validate_user_env

MAX_DEPLOY_BODY = 200 * 1024 * 1024
_deploying = KeyedLocks()  # tenant id -> its deploys, one at a time (the agent bound holds)


class AgentsHandler(ApiHandler):
    max_body = MAX_DEPLOY_BODY

    async def post(self) -> None:
        body = self.json_body()
        name = check_agent_name(body.get("name"))
        env = validate_user_env(body.get("env"), "env")
        prompt = body.get("systemPrompt")
        if prompt is not None and not isinstance(prompt, str):
            raise BadRequest("systemPrompt must be a string")
        if body.get("path") is not None and body.get("files") is not None:
            raise BadRequest("give either path (a folder on the server) or files (an upload), not both")
        async with _deploying(self.tenant):
            await self._check_room(name)
            await self._deploy(name, body, env, prompt)

    async def _check_room(self, name: str) -> None:
        """409 when ``name`` is a new agent and the tenant has as many as it may."""
        most = self.ctx.config.agents.max_per_tenant
        rows = await self.ctx.offload.read(self.ctx.store.list_agents, self.tenant)
        if len(rows) >= most and all(r.name != name for r in rows):
            raise Conflict(f"this tenant has {len(rows)} agents, the most it may (agents.max_per_tenant, "
                           "ASH_MAX_AGENTS): delete one first, or redeploy an existing name")

    async def _deploy(self, name: str, body: dict[str, Any], env: dict[str, str], prompt: str | None) -> None:
        offload = self.ctx.offload
        if body.get("path") is not None:
            # The operator's right (ashd/files/agent_path.py); other keys only inside agents.path_roots.
            rules = agent_path.PathRules.from_config(self.ctx.config)
            operator = scopes.DEPLOY_PATH in self.principal.scopes
            agent_dir = await offload.read(agent_path.resolve, rules, body["path"], operator)
        else:
            files = parse_files(body.get("files"))
            self.ctx.keep_floor(sum(len(f.content) for f in files), "this agent's files")
            agent_dir = self.ctx.layout.managed_agent_dir(self.tenant, name)
            await offload.read(write_agent_folder, agent_dir, files, prompt, name)
        row = await offload.write(self.ctx.store.upsert_agent, self.tenant, name, str(agent_dir), env)
        self.ctx.runtime.prewarm(row, prewarm_count(row, self.ctx.config.pool.prewarm_per_agent))
        self.send_json({"agent": agent_json(row)}, status=201)

    async def get(self) -> None:
        rows = await self.ctx.offload.read(self.ctx.store.list_agents, self.tenant)
        self.send_json({"agents": [agent_json(r) for r in rows]})


class AgentNameHandler(ApiHandler):
    """A route under /api/agents/:name. A name no deploy could have created (e.g. with a
    NUL byte, which Postgres cannot even compare) is refused with 400 before any lookup."""

    async def prepare(self) -> None:
        await super().prepare()
        check_agent_name(self.path_args[0] if self.path_args else None)


class AgentHandler(AgentNameHandler):
    async def get(self, name: str) -> None:
        row = await self.ctx.offload.read(self.ctx.store.get_agent, self.tenant, name)
        if row is None:
            raise NotFound(f"Agent {name} not found")
        self.send_json({"agent": agent_json(row)})

    async def patch(self, name: str) -> None:
        """``{env?, config?}``: env replaces the agent's env (validated like a deploy's),
        config is shallow-merged like PATCH .../config. Neither bumps the version."""
        body = self.json_body()
        unknown = sorted(set(body) - {"env", "config"})
        if unknown:
            raise BadRequest(f"unknown agent field(s): {', '.join(unknown)}; PATCH accepts env and config")
        env = validate_user_env(body["env"], "env") if body.get("env") is not None else None
        patch = body.get("config")
        if patch is not None and not isinstance(patch, dict):
            raise BadRequest("config must be an object (it is shallow-merged into the agent's config)")
        if patch is not None:
            check_config_patch(patch)
        row = await self.ctx.offload.read(self.ctx.store.get_agent, self.tenant, name)
        if row is None:
            raise NotFound(f"Agent {name} not found")
        config = {**(row.config or {}), **patch} if patch is not None else None
        updated = await self.ctx.offload.write(self.ctx.store.patch_agent, self.tenant, name, env, config)
        if updated is None:
            raise NotFound(f"Agent {name} not found")
        if patch is not None:
            self.ctx.runtime.prewarm(updated, prewarm_count(updated, self.ctx.config.pool.prewarm_per_agent))
        self.send_json({"agent": agent_json(updated)})

    async def delete(self, name: str) -> None:
        """End the agent's live sessions, then delete it and its sessions (like Ash)."""
        store, offload = self.ctx.store, self.ctx.offload
        row = await offload.read(store.get_agent, self.tenant, name)
        if row is None:
            raise NotFound(f"Agent {name} not found")
        sessions = await offload.read(store.list_sessions, self.tenant, name)
        live = [s.id for s in sessions if s.status != SessionStatus.ENDED.value]
        await self.ctx.runtime.end_agent_sessions(self.tenant, live)
        await offload.write(store.delete_agent, self.tenant, name)
        managed = self.ctx.layout.managed_agent_dir(self.tenant, name)
        if row.path == str(managed):
            await offload.read(shutil.rmtree, managed, True)
        self.send_json({"ok": True})


class AgentConfigHandler(AgentNameHandler):
    """GET/PATCH /api/agents/:name/config: Ash's free-form agent config (shallow merge).

    Known key: ``preWarmCount`` (0-10), the number of pre-warmed sandboxes kept ready.
    """

    async def get(self, name: str) -> None:
        row = await self.ctx.offload.read(self.ctx.store.get_agent, self.tenant, name)
        if row is None:
            raise NotFound(f"Agent {name} not found")
        self.send_json({"config": row.config or {}})

    async def patch(self, name: str) -> None:
        patch = self.json_body()
        check_config_patch(patch)
        row = await self.ctx.offload.read(self.ctx.store.get_agent, self.tenant, name)
        if row is None:
            raise NotFound(f"Agent {name} not found")
        merged = {**(row.config or {}), **patch}
        updated = await self.ctx.offload.write(self.ctx.store.set_agent_config, self.tenant, name, merged)
        if updated is None:
            raise NotFound(f"Agent {name} not found")
        self.ctx.runtime.prewarm(updated, prewarm_count(updated, self.ctx.config.pool.prewarm_per_agent))
        self.send_json({"config": updated.config or {}})


MAX_PREWARM = 10


def check_config_patch(patch: dict[str, object]) -> None:
    """Known config keys are checked (raises BadRequest); others are kept as given."""
    count = patch.get("preWarmCount")
    if count is not None and (not isinstance(count, int) or isinstance(count, bool)
                              or not 0 <= count <= MAX_PREWARM):
        raise BadRequest(f"preWarmCount must be an integer from 0 to {MAX_PREWARM}")


def prewarm_count(agent: AgentRow, default: int) -> int:
    count = (agent.config or {}).get("preWarmCount", default)
    return count if isinstance(count, int) and 0 <= count <= MAX_PREWARM else default
