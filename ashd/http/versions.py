"""/api/agents/:name/versions: named prompt versions of an agent (Ash's agent-versions routes).

The active version's ``systemPrompt`` becomes the system prompt of the agent's NEW sessions
(a request's own ``systemPrompt`` still wins; CLAUDE.md is the fallback).
``knowledgeFiles`` is metadata only, as in Ash.
"""

from __future__ import annotations

import uuid
from typing import Any

from ashd.errors import BadRequest, Conflict, NotFound
from ashd.http.agents import AgentNameHandler
from ashd.options import MAX_SYSTEM_PROMPT_CHARS
from ashd.store.version_queries import AgentVersionRow, VersionRef

MAX_NAME_CHARS = 255
MAX_NOTES_CHARS = 100_000
MAX_FILES = 200
MAX_FILE_CHARS = 1024
MAX_VERSION_NUMBER = 2**31 - 1
FIELDS = {"name": "name", "systemPrompt": "system_prompt", "releaseNotes": "release_notes",
          "knowledgeFiles": "knowledge_files"}


def version_json(row: AgentVersionRow) -> dict[str, Any]:
    return {"id": row.id, "agentName": row.agent_name, "versionNumber": row.version_number, "name": row.name,
            "systemPrompt": row.system_prompt, "releaseNotes": row.release_notes, "isActive": row.is_active,
            "knowledgeFiles": row.knowledge_files, "createdBy": row.created_by, "createdAt": row.created_at,
            "updatedAt": row.updated_at}


def parse_ref(raw: object, what: str = "version") -> VersionRef:
    """A version number (positive int, or its digits) or a version UUID. Raises BadRequest."""
    if isinstance(raw, int) and not isinstance(raw, bool) and 1 <= raw <= MAX_VERSION_NUMBER:
        return raw
    if isinstance(raw, str):
        if raw.isdigit() and raw.isascii() and 1 <= int(raw) <= MAX_VERSION_NUMBER:
            return int(raw)
        try:
            return str(uuid.UUID(raw))
        except ValueError:
            pass
    raise BadRequest(f"{what} must be a version number (1, 2, ...) or a version id (UUID), got {raw!r}")


def _text(body: dict[str, Any], key: str, limit: int, nullable: bool) -> str | None:
    value = body[key]
    if value is None and nullable:
        return None
    if not isinstance(value, str) or len(value) > limit or (not nullable and not value.strip()):
        kind = "a string" if nullable else "a non-empty string"
        raise BadRequest(f"{key} must be {kind} of at most {limit} characters" + (" or null" if nullable else ""))
    return value


def parse_fields(body: dict[str, Any], extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """The version columns a POST/PATCH body sets (only the keys present). Raises BadRequest."""
    unknown = sorted(set(body) - set(FIELDS) - set(extra))
    if unknown:
        raise BadRequest(f"unknown version field(s): {', '.join(unknown)}; allowed: {', '.join([*FIELDS, *extra])}")
    out: dict[str, Any] = {}
    if "name" in body:
        out["name"] = _text(body, "name", MAX_NAME_CHARS, nullable=False)
    if "systemPrompt" in body:
        out["system_prompt"] = _text(body, "systemPrompt", MAX_SYSTEM_PROMPT_CHARS, nullable=True)
    if "releaseNotes" in body:
        out["release_notes"] = _text(body, "releaseNotes", MAX_NOTES_CHARS, nullable=True)
    if "knowledgeFiles" in body:
        files = body["knowledgeFiles"]
        if not isinstance(files, list) or len(files) > MAX_FILES or not all(
                isinstance(f, str) and 0 < len(f) <= MAX_FILE_CHARS for f in files):
            raise BadRequest(f"knowledgeFiles must be a list of at most {MAX_FILES} non-empty strings "
                             f"(each at most {MAX_FILE_CHARS} characters)")
        out["knowledge_files"] = list(files)
    return out


class VersionBase(AgentNameHandler):
    async def require_agent(self, name: str) -> None:
        if await self.ctx.offload.read(self.ctx.store.get_agent, self.tenant, name) is None:
            raise NotFound(f"Agent {name} not found")

    async def version(self, name: str, raw: str) -> AgentVersionRow:
        ref = parse_ref(raw)
        await self.require_agent(name)
        row = await self.ctx.offload.read(self.ctx.store.get_agent_version, self.tenant, name, ref)
        if row is None:
            raise NotFound(f"Version {raw} of agent {name} not found")
        return row


class AgentVersionsHandler(VersionBase):
    async def get(self, name: str) -> None:
        await self.require_agent(name)
        rows = await self.ctx.offload.read(self.ctx.store.list_agent_versions, self.tenant, name)
        self.send_json({"versions": [version_json(r) for r in rows]})

    async def post(self, name: str) -> None:
        body = self.json_body()
        fields = parse_fields(body, extra=("cloneFrom",))
        await self.require_agent(name)
        if body.get("cloneFrom") is not None:
            ref = parse_ref(body["cloneFrom"], "cloneFrom")
            source = await self.ctx.offload.read(self.ctx.store.get_agent_version, self.tenant, name, ref)
            if source is None:
                raise BadRequest(f"cloneFrom: agent {name} has no version {body['cloneFrom']}")
            fields = {"system_prompt": source.system_prompt, "release_notes": source.release_notes,
                      "knowledge_files": source.knowledge_files, **fields}
        row = await self.ctx.offload.write(self.ctx.store.create_agent_version, self.tenant, name, fields,
                                           self.principal.key_id)
        self.send_json({"version": version_json(row)}, status=201)


class AgentVersionHandler(VersionBase):
    async def get(self, name: str, raw: str) -> None:
        self.send_json({"version": version_json(await self.version(name, raw))})

    async def patch(self, name: str, raw: str) -> None:
        fields = parse_fields(self.json_body())
        row = await self.version(name, raw)
        if fields:
            updated = await self.ctx.offload.write(self.ctx.store.update_agent_version, self.tenant, name,
                                                   row.id, fields)
            if updated is None:  # deleted meanwhile
                raise NotFound(f"Version {raw} of agent {name} not found")
            row = updated
        self.send_json({"version": version_json(row)})

    async def delete(self, name: str, raw: str) -> None:
        row = await self.version(name, raw)
        if row.is_active:
            raise Conflict(f"version {row.version_number} is the active version of agent {name}; "
                           "activate another version first")
        await self.ctx.offload.write(self.ctx.store.delete_agent_version, self.tenant, name, row.id)
        self.set_status(204)
        self.finish()


class AgentVersionActivateHandler(VersionBase):
    async def post(self, name: str, raw: str) -> None:
        row = await self.version(name, raw)
        if not await self.ctx.offload.write(self.ctx.store.activate_agent_version, self.tenant, name, row.id):
            raise NotFound(f"Version {raw} of agent {name} not found")
        self.send_json({"activated": True, "versionNumber": row.version_number})
