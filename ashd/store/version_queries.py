"""SQL for ``agent_versions``: named prompt versions of an agent, at most one active.

Functions run inside the caller's (write) transaction; every query is scoped to one tenant
and agent name. ``ref`` arguments are a version number (int) or a version id (str).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .dialect import new_id
from .schema import agent_versions, agents

VersionRef = int | str


@dataclass(frozen=True, slots=True)
class AgentVersionRow:
    id: str
    tenant_id: str
    agent_name: str
    version_number: int
    name: str
    system_prompt: str | None
    release_notes: str | None
    is_active: bool
    knowledge_files: list[str]
    created_by: str | None
    created_at: str
    updated_at: str

    @classmethod
    def from_db(cls, m: Mapping[Any, Any]) -> AgentVersionRow:
        fields = dict(m)
        fields["is_active"] = bool(fields["is_active"])
        files = json.loads(fields["knowledge_files"] or "[]")
        fields["knowledge_files"] = [f for f in files if isinstance(f, str)] if isinstance(files, list) else []
        return cls(**fields)


def _owned(tenant_id: str, agent_name: str) -> tuple[Any, ...]:
    return agent_versions.c.tenant_id == tenant_id, agent_versions.c.agent_name == agent_name


def _by_ref(ref: VersionRef) -> Any:
    if isinstance(ref, int):
        return agent_versions.c.version_number == ref
    return agent_versions.c.id == ref


def list_for(conn: Connection, tenant_id: str, agent_name: str) -> list[AgentVersionRow]:
    stmt = sa.select(agent_versions).where(*_owned(tenant_id, agent_name)).order_by(agent_versions.c.version_number)
    return [AgentVersionRow.from_db(m) for m in conn.execute(stmt).mappings()]


def get(conn: Connection, tenant_id: str, agent_name: str, ref: VersionRef) -> AgentVersionRow | None:
    stmt = sa.select(agent_versions).where(*_owned(tenant_id, agent_name), _by_ref(ref))
    m = conn.execute(stmt).mappings().one_or_none()
    return None if m is None else AgentVersionRow.from_db(m)


def create(conn: Connection, tenant_id: str, agent_name: str, fields: Mapping[str, Any],
           created_by: str | None, now: str) -> AgentVersionRow:
    """Insert the next version number (max + 1). ``fields``: name, system_prompt,
    release_notes, knowledge_files (a list). A concurrent create of the same agent loses the
    unique constraint race (Conflict), never gets a duplicate number."""
    top = conn.execute(sa.select(sa.func.max(agent_versions.c.version_number))
                       .where(*_owned(tenant_id, agent_name))).scalar_one()
    number = int(top or 0) + 1
    values = {
        "id": new_id(), "tenant_id": tenant_id, "agent_name": agent_name, "version_number": number,
        "name": fields.get("name") or f"v{number}", "system_prompt": fields.get("system_prompt"),
        "release_notes": fields.get("release_notes"), "is_active": False,
        "knowledge_files": json.dumps(list(fields.get("knowledge_files") or [])),
        "created_by": created_by, "created_at": now, "updated_at": now,
    }
    conn.execute(sa.insert(agent_versions).values(**values))
    return AgentVersionRow.from_db(values)


def update(conn: Connection, tenant_id: str, agent_name: str, ref: VersionRef,
           changes: Mapping[str, Any], now: str) -> AgentVersionRow | None:
    values = dict(changes)
    if "knowledge_files" in values:
        values["knowledge_files"] = json.dumps(list(values["knowledge_files"]))
    stmt = (sa.update(agent_versions).where(*_owned(tenant_id, agent_name), _by_ref(ref))
            .values(**values, updated_at=now).returning(*agent_versions.c))
    m = conn.execute(stmt).mappings().one_or_none()
    return None if m is None else AgentVersionRow.from_db(m)


def delete(conn: Connection, tenant_id: str, agent_name: str, version_id: str) -> bool:
    stmt = sa.delete(agent_versions).where(*_owned(tenant_id, agent_name), agent_versions.c.id == version_id)
    return conn.execute(stmt).rowcount > 0


def delete_all(conn: Connection, tenant_id: str, agent_name: str) -> int:
    return int(conn.execute(sa.delete(agent_versions).where(*_owned(tenant_id, agent_name))).rowcount)


def activate(conn: Connection, tenant_id: str, agent_name: str, version_id: str, now: str) -> bool:
    """Make ``version_id`` the agent's only active version and record it on the agent row.
    False if the agent has no such version (nothing changed)."""
    owned = _owned(tenant_id, agent_name)
    found = conn.execute(sa.select(agent_versions.c.id).where(*owned, agent_versions.c.id == version_id)
                         .with_for_update()).one_or_none()
    if found is None:
        return False
    conn.execute(sa.update(agent_versions).where(*owned, agent_versions.c.is_active.is_(True),
                                                 agent_versions.c.id != version_id)
                 .values(is_active=False, updated_at=now))
    conn.execute(sa.update(agent_versions).where(*owned, agent_versions.c.id == version_id)
                 .values(is_active=True, updated_at=now))
    conn.execute(sa.update(agents).where(agents.c.tenant_id == tenant_id, agents.c.name == agent_name)
                 .values(active_version_id=version_id))
    return True


def active_prompt(conn: Connection, tenant_id: str, agent_name: str) -> str | None:
    """The active version's system prompt, or None (no active version, or it has none)."""
    stmt = (sa.select(agent_versions.c.system_prompt)
            .where(*_owned(tenant_id, agent_name), agent_versions.c.is_active.is_(True))
            .order_by(agent_versions.c.version_number.desc()).limit(1))
    return conn.execute(stmt).scalar_one_or_none()
