"""SQL for ``agents`` (and the session data an agent deletion removes).

Functions run inside the caller's (write) transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .dialect import new_id, upsert_insert
from .rows import AgentRow, encode_json
from .schema import agent_versions, agents, messages, session_events, sessions


def upsert(
    conn: Connection,
    tenant_id: str,
    name: str,
    path: str,
    env: Mapping[str, str],
    config: Mapping[str, Any] | None,
    now: str,
) -> AgentRow:
    """Insert version 1, or bump the version of the existing (tenant, name) row.

    One ``INSERT .. ON CONFLICT DO UPDATE`` statement, so two concurrent upserts of
    one name end as versions n+1 and n+2, never as a duplicate-key error.
    """
    ins = upsert_insert(conn, agents).values(
        id=new_id(), tenant_id=tenant_id, name=name, version=1, path=path,
        env=encode_json(env), config=encode_json(config), active_version_id=None,
        created_at=now, updated_at=now,
    )
    changes: dict[str, Any] = {
        "version": agents.c.version + 1,
        "path": ins.excluded.path,
        "env": ins.excluded.env,
        "updated_at": ins.excluded.updated_at,
    }
    if config is not None:
        changes["config"] = ins.excluded.config
    stmt = ins.on_conflict_do_update(
        index_elements=[agents.c.tenant_id, agents.c.name], set_=changes
    ).returning(*agents.c)
    return AgentRow.from_db(conn.execute(stmt).mappings().one())


def get(conn: Connection, tenant_id: str, name: str) -> AgentRow | None:
    stmt = sa.select(agents).where(agents.c.tenant_id == tenant_id, agents.c.name == name)
    m = conn.execute(stmt).mappings().one_or_none()
    return None if m is None else AgentRow.from_db(m)


def list_for(conn: Connection, tenant_id: str | None) -> list[AgentRow]:
    """The tenant's agents by name; every tenant's with ``tenant_id=None`` (internal use)."""
    stmt = sa.select(agents).order_by(agents.c.tenant_id, agents.c.name)
    if tenant_id is not None:
        stmt = stmt.where(agents.c.tenant_id == tenant_id)
    return [AgentRow.from_db(m) for m in conn.execute(stmt).mappings()]


def set_config(
    conn: Connection, tenant_id: str, name: str, config: Mapping[str, Any] | None, now: str
) -> AgentRow | None:
    stmt = (
        sa.update(agents)
        .where(agents.c.tenant_id == tenant_id, agents.c.name == name)
        .values(config=encode_json(config), updated_at=now)
        .returning(*agents.c)
    )
    m = conn.execute(stmt).mappings().one_or_none()
    return None if m is None else AgentRow.from_db(m)


def set_env_and_config(
    conn: Connection, tenant_id: str, name: str, env: Mapping[str, str] | None,
    config: Mapping[str, Any] | None, now: str,
) -> AgentRow | None:
    """Replace env and/or config (None: keep) without bumping the version; None if no agent."""
    values: dict[str, Any] = {"updated_at": now}
    if env is not None:
        values["env"] = encode_json(env)
    if config is not None:
        values["config"] = encode_json(config)
    stmt = (sa.update(agents).where(agents.c.tenant_id == tenant_id, agents.c.name == name)
            .values(**values).returning(*agents.c))
    m = conn.execute(stmt).mappings().one_or_none()
    return None if m is None else AgentRow.from_db(m)


def delete(conn: Connection, tenant_id: str, name: str) -> bool:
    """Delete the agent, its versions, its sessions and their messages and events."""
    gone = conn.execute(
        sa.delete(agents).where(agents.c.tenant_id == tenant_id, agents.c.name == name)
    )
    if gone.rowcount == 0:
        return False
    conn.execute(sa.delete(agent_versions).where(agent_versions.c.tenant_id == tenant_id,
                                                 agent_versions.c.agent_name == name))
    owned = (sessions.c.tenant_id == tenant_id, sessions.c.agent_name == name)
    # Lock the sessions first so in-flight appends finish (or see them gone).
    conn.execute(sa.select(sessions.c.id).where(*owned).with_for_update())
    session_ids = sa.select(sessions.c.id).where(*owned)
    for log in (messages, session_events):
        conn.execute(sa.delete(log).where(log.c.session_id.in_(session_ids)))
    conn.execute(sa.delete(sessions).where(*owned))
    return True
