"""Rows to Ash's JSON shapes (camelCase, Ash's field names)."""

from __future__ import annotations

from collections.abc import Container
from typing import Any

from ashd.events import message_type
from ashd.store import AgentRow, EventRow, MessageRow, SessionRow


def agent_json(row: AgentRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "tenantId": row.tenant_id,
        "version": row.version,
        "path": row.path,
        "env": {k: "***" for k in row.env},
        "createdAt": row.created_at,
        "updatedAt": row.updated_at,
    }


def session_json(row: SessionRow, warm: Container[str]) -> dict[str, Any]:
    """``runtime`` (ashd's addition; Ash's clients ignore it): ``warm`` while the session's CLI
    lives, ``parked`` without one (its next message starts it again with the conversation)."""
    return {
        "id": row.id,
        "tenantId": row.tenant_id,
        "agentName": row.agent_name,
        "sandboxId": row.sandbox_id or row.id,
        "status": row.status,
        "runnerId": row.runner_id,
        "parentSessionId": row.parent_session_id,
        "createdAt": row.created_at,
        "lastActiveAt": row.last_active_at,
        "statusReason": row.status_reason,
        "model": row.model,
        "runtime": "warm" if row.id in warm else "parked",
    }


def message_json(row: MessageRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "sessionId": row.session_id,
        "tenantId": row.tenant_id,
        "role": row.role,
        "type": message_type(row.role, row.content),
        "content": row.content,
        "sequence": row.sequence,
        "createdAt": row.created_at,
    }


def event_json(row: EventRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "sessionId": row.session_id,
        "tenantId": row.tenant_id,
        "type": row.type,
        "data": row.data,
        "sequence": row.sequence,
        "createdAt": row.created_at,
    }
