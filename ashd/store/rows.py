"""Immutable row values returned by :class:`ashd.store.Store`.

Rows are frozen dataclasses, safe to pass between threads. Field names are the
snake_case column names; JSON text columns are decoded (``env`` to a dict of strings,
``config`` to a dict or None). ``from_db`` builds a row from a SQLAlchemy result
mapping; it raises ValueError if a JSON column holds malformed JSON and TypeError
if that JSON is not an object.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

JsonDict = dict[str, Any]


class Unset(enum.Enum):
    """Type of :data:`UNSET`."""

    UNSET = enum.auto()


UNSET = Unset.UNSET
"""Default of optional update arguments: leave the column as it is."""


def encode_json(value: Mapping[str, Any] | None) -> str | None:
    """Serialize a JSON object column; None stays NULL."""
    return None if value is None else json.dumps(dict(value), separators=(",", ":"))


def decode_json(text: str | None) -> JsonDict | None:
    """Parse a JSON object column; NULL becomes None.

    Raises ValueError on malformed JSON, TypeError if it is not an object.
    """
    if text is None:
        return None
    value = json.loads(text)
    if not isinstance(value, dict):
        raise TypeError(f"expected a JSON object, got {type(value).__name__}")
    return value


@dataclass(frozen=True, slots=True)
class AgentRow:
    id: str
    tenant_id: str
    name: str
    version: int
    path: str
    env: dict[str, str]
    config: JsonDict | None
    active_version_id: str | None
    created_at: str
    updated_at: str

    @classmethod
    def from_db(cls, m: Mapping[Any, Any]) -> AgentRow:
        fields = dict(m)
        fields["env"] = decode_json(m["env"]) or {}
        fields["config"] = decode_json(m["config"])
        return cls(**fields)


@dataclass(frozen=True, slots=True)
class SessionRow:
    id: str
    tenant_id: str
    agent_name: str
    sandbox_id: str | None
    status: str
    runner_id: str | None
    parent_session_id: str | None
    model: str | None
    config: JsonDict | None
    created_at: str
    last_active_at: str
    status_reason: str | None = None  # why it is in ``error`` (or was paused), for operators

    @classmethod
    def from_db(cls, m: Mapping[Any, Any]) -> SessionRow:
        fields = dict(m)
        fields["config"] = decode_json(m["config"])
        return cls(**fields)


@dataclass(frozen=True, slots=True)
class RunnerRow:
    """A registered runner (docs/scale-out.md). ``generation`` fences it: it rises on every
    registration, so whatever a runner served under an older generation is no longer its own."""

    id: str
    host: str
    port: int
    max_sandboxes: int
    active_count: int
    warming_count: int
    last_heartbeat_at: str
    registered_at: str
    generation: int
    draining: bool
    gone: bool = False  # deregistered or swept (only register reads such rows)

    @property
    def free(self) -> int:
        return self.max_sandboxes - self.active_count - self.warming_count

    @classmethod
    def from_db(cls, m: Mapping[Any, Any]) -> RunnerRow:
        return cls(**dict(m))


@dataclass(frozen=True, slots=True)
class SandboxRow:
    id: str
    tenant_id: str
    session_id: str | None
    agent_name: str
    state: str
    workspace_dir: str
    created_at: str
    last_used_at: str

    @classmethod
    def from_db(cls, m: Mapping[Any, Any]) -> SandboxRow:
        return cls(**dict(m))


@dataclass(frozen=True, slots=True)
class MessageRow:
    id: str
    tenant_id: str
    session_id: str
    role: str
    content: str
    sequence: int
    created_at: str

    @classmethod
    def from_db(cls, m: Mapping[Any, Any]) -> MessageRow:
        return cls(**dict(m))


@dataclass(frozen=True, slots=True)
class EventRow:
    id: str
    tenant_id: str
    session_id: str
    type: str
    data: str
    sequence: int
    created_at: str

    @classmethod
    def from_db(cls, m: Mapping[Any, Any]) -> EventRow:
        return cls(**dict(m))


@dataclass(frozen=True, slots=True)
class ApiKeyRow:
    id: str
    tenant_id: str
    key_hash: str
    label: str
    created_at: str
    scopes: str = "admin"
    key_prefix: str | None = None  # the key's first characters; None for keys minted before 0006

    @classmethod
    def from_db(cls, m: Mapping[Any, Any]) -> ApiKeyRow:
        return cls(**dict(m))
