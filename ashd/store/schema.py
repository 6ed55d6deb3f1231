"""Table definitions: the single source of truth for ashd's relational schema.

Mirrors Ash's tables and columns (snake_case). Portable types only, so the same
metadata works on SQLite and Postgres:

* ids are UUID strings (``VARCHAR(36)``); runner ids are free text;
* timestamps are ISO-8601 UTC text with milliseconds and ``Z`` (see ``timestamps.py``),
  so they sort lexically and serialize unchanged;
* JSON documents (``env``, ``config``) are stored as text and decoded in ``rows.py``.

``migrations/versions`` must match this module exactly; a test compares them.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

_ID = sa.String(36)


def _id(name: str = "id", *, nullable: bool = False) -> sa.Column[str]:
    return sa.Column(name, _ID, primary_key=name == "id", nullable=nullable)


def _text(name: str, *, nullable: bool = False) -> sa.Column[str]:
    return sa.Column(name, sa.Text(), nullable=nullable)


agents = sa.Table(
    "agents",
    metadata,
    _id(),
    _text("tenant_id"),
    _text("name"),
    sa.Column("version", sa.Integer(), nullable=False),
    _text("path"),
    _text("env"),
    _text("config", nullable=True),
    _id("active_version_id", nullable=True),
    _text("created_at"),
    _text("updated_at"),
    sa.UniqueConstraint("tenant_id", "name", name="uq_agents_tenant_name"),
)

sessions = sa.Table(
    "sessions",
    metadata,
    _id(),
    _text("tenant_id"),
    _text("agent_name"),
    _id("sandbox_id", nullable=True),
    _text("status"),
    _text("runner_id", nullable=True),
    _id("parent_session_id", nullable=True),
    _text("model", nullable=True),
    _text("config", nullable=True),
    _text("created_at"),
    _text("last_active_at"),
    _text("status_reason", nullable=True),
    sa.Index("ix_sessions_tenant_agent", "tenant_id", "agent_name"),
)

sandboxes = sa.Table(
    "sandboxes",
    metadata,
    _id(),
    _text("tenant_id"),
    _id("session_id", nullable=True),
    _text("agent_name"),
    _text("state"),
    _text("workspace_dir"),
    _text("created_at"),
    _text("last_used_at"),
)


runners = sa.Table(
    # Runners registered with the coordinators (server.mode = runner; docs/scale-out.md).
    "runners",
    metadata,
    sa.Column("id", sa.Text(), primary_key=True),  # the runner's own name (ASH_RUNNER_ID), not a UUID
    _text("host"),
    sa.Column("port", sa.Integer(), nullable=False),
    sa.Column("max_sandboxes", sa.Integer(), nullable=False),
    sa.Column("active_count", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("warming_count", sa.Integer(), nullable=False, server_default="0"),
    _text("last_heartbeat_at"),
    _text("registered_at"),
    # Fencing: raised on every registration, so a runner that comes back from a partition
    # holds a stale generation and is told to drop what it served before.
    sa.Column("generation", sa.Integer(), nullable=False),
    sa.Column("draining", sa.Boolean(), nullable=False, server_default=sa.false()),
    # Deregistered or swept. The row stays (hidden from every query but register), so the
    # runner's next registration still raises its generation: fencing never goes back to 1.
    sa.Column("gone", sa.Boolean(), nullable=False, server_default=sa.false()),
)


def _session_fk(table: str) -> sa.Column[str]:
    # Deleting a session removes its log; appends lock the session row first.
    fk = sa.ForeignKey("sessions.id", ondelete="CASCADE", name=f"fk_{table}_session_id")
    return sa.Column("session_id", _ID, fk, nullable=False)


messages = sa.Table(
    "messages",
    metadata,
    _id(),
    _text("tenant_id"),
    _session_fk("messages"),
    _text("role"),
    _text("content"),
    sa.Column("sequence", sa.Integer(), nullable=False),
    _text("created_at"),
    sa.UniqueConstraint("tenant_id", "session_id", "sequence", name="uq_messages_sequence"),
)

session_events = sa.Table(
    "session_events",
    metadata,
    _id(),
    _text("tenant_id"),
    _session_fk("session_events"),
    _text("type"),
    _text("data"),
    sa.Column("sequence", sa.Integer(), nullable=False),
    _text("created_at"),
    sa.UniqueConstraint(
        "tenant_id", "session_id", "sequence", name="uq_session_events_sequence"
    ),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    _id(),
    _text("tenant_id"),
    _text("key_hash"),
    _text("label"),
    _text("created_at"),
    # Space-separated scopes: "admin", "write", "read" (see ashd/http/scopes.py).
    sa.Column("scopes", sa.Text(), nullable=False, server_default="admin"),
    # The key's first characters (shown as keyPrefix); NULL for keys minted before 0006.
    _text("key_prefix", nullable=True),
    sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
)

credentials = sa.Table(
    # Upstream model keys, AES-256-GCM encrypted with a key derived from ASH_CREDENTIAL_KEY.
    "credentials",
    metadata,
    _id(),
    _text("tenant_id"),
    _text("type"),
    _text("encrypted_key"),
    _text("iv"),
    _text("auth_tag"),
    _text("salt"),
    _text("label"),
    sa.Column("active", sa.Boolean(), nullable=False),
    _text("created_at"),
    _text("last_used_at", nullable=True),
    sa.Index("ix_credentials_tenant", "tenant_id"),
)

agent_versions = sa.Table(
    "agent_versions",
    metadata,
    _id(),
    _text("tenant_id"),
    _text("agent_name"),
    sa.Column("version_number", sa.Integer(), nullable=False),
    _text("name"),
    _text("system_prompt", nullable=True),
    _text("release_notes", nullable=True),
    sa.Column("is_active", sa.Boolean(), nullable=False),
    _text("knowledge_files"),  # JSON list of strings
    _text("created_by", nullable=True),
    _text("created_at"),
    _text("updated_at"),
    sa.UniqueConstraint("tenant_id", "agent_name", "version_number", name="uq_agent_versions_number"),
)

attachments = sa.Table(
    "attachments",
    metadata,
    _id(),
    _text("tenant_id"),
    _text("message_id"),
    _session_fk("attachments"),
    _text("filename"),
    _text("mime_type"),
    sa.Column("size", sa.Integer(), nullable=False),
    _text("storage_path"),
    _text("created_at"),
    sa.Index("ix_attachments_tenant_session", "tenant_id", "session_id"),
)

queue_items = sa.Table(
    "queue_items",
    metadata,
    _id(),
    _text("tenant_id"),
    _id("session_id", nullable=True),
    _text("agent_name"),
    _text("prompt"),
    _text("status"),
    sa.Column("priority", sa.Integer(), nullable=False),
    sa.Column("retry_count", sa.Integer(), nullable=False),
    sa.Column("max_retries", sa.Integer(), nullable=False),
    _text("error", nullable=True),
    _text("retry_after", nullable=True),
    _text("started_at", nullable=True),
    _text("completed_at", nullable=True),
    _text("created_at"),
    _text("claimed_by", nullable=True),  # the coordinator processing it (ashd/store/coordinators.py)
    sa.Index("ix_queue_items_status", "status", "priority", "created_at"),
    sa.Index("ix_queue_items_tenant", "tenant_id"),
)


stream_events = sa.Table(
    # Every SSE frame a session emitted, with its per-session id, for replay (Last-Event-ID).
    "stream_events",
    metadata,
    _id(),
    _text("tenant_id"),
    _session_fk("stream_events"),
    sa.Column("seq", sa.Integer(), nullable=False),
    _text("event"),
    _text("data"),
    _text("created_at"),
    sa.UniqueConstraint("session_id", "seq", name="uq_stream_events_seq"),
)

transcript_entries = sa.Table(
    # The CLI's transcript lines (opaque JSON) mirrored through the SDK's session store.
    "transcript_entries",
    metadata,
    _id(),
    _text("tenant_id"),
    _session_fk("transcript_entries"),
    _text("subpath"),
    sa.Column("seq", sa.Integer(), nullable=False),
    _text("entry"),
    _text("created_at"),
    sa.UniqueConstraint("session_id", "subpath", "seq", name="uq_transcript_entries_seq"),
)

# Tables defined next to their queries register themselves on ``metadata`` when imported.
from ashd.store import eval_queries as _evals  # noqa: E402, F401
from ashd.store import usage as _usage  # noqa: E402, F401
