"""``Store``: the one persistence API the rest of ashd uses.

Every method is synchronous (blocks on database I/O), thread-safe (each call takes a
pooled connection for one short transaction) and returns frozen rows from
``rows.py``. Reads take ``tenant_id`` and never return another tenant's rows, except
the methods documented as internal (all tenants).

Errors: StoreUnavailable (database unreachable or busy), Conflict (duplicate key),
StoreError (anything else the database rejects, unknown session on append).
ValueError for caller mistakes (an id longer than 36 characters, negative paging).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from . import (
    agent_queries,
    analytics,
    attachment_queries,
    credential_queries,
    key_queries,
    raw_writes,
    sandbox_queries,
    session_queries,
    usage,
    version_queries,
)
from .queue_store import QueueStore
from .rows import UNSET, AgentRow, ApiKeyRow, SandboxRow, SessionRow, Unset
from .session_logs import SessionLogStore


class Store(SessionLogStore, QueueStore):
    """Typed access to ashd's tables over SQLite or Postgres (see module docstring): keys,
    agents, sessions, sandboxes, usage, credentials, versions and attachments here; a
    session's logs in ``session_logs.py``, the prompt queue in ``queue_store.py``; the
    connections and transactions all of them use in ``store_base.py``."""

    # -- api keys ---------------------------------------------------------------

    def add_api_key(self, tenant_id: str, key_hash: str, label: str, scopes: str = "admin",
                    key_prefix: str | None = None) -> ApiKeyRow:
        """Store a key hash (and the key's first characters) for ``tenant_id``. Raises
        Conflict if the hash exists."""
        with self._write() as conn:
            return key_queries.add(conn, tenant_id, key_hash, label, self._clock(), scopes, key_prefix)

    def find_api_key(self, key_hash: str) -> ApiKeyRow | None:
        """The key with this hash, whatever its tenant (used to authenticate)."""
        with self._read() as conn:
            return key_queries.find(conn, key_hash)

    def set_api_key_scopes(self, key_id: str, scopes: str) -> None:
        """Replace the scopes of key ``key_id`` (the operator's start-up upgrade only)."""
        with self._write() as conn:
            key_queries.set_scopes(conn, key_id, scopes)

    def set_api_key_prefix(self, key_id: str, key_prefix: str) -> None:
        """Record the first characters of key ``key_id`` (the bootstrap key, at start-up)."""
        with self._write() as conn:
            key_queries.set_prefix(conn, key_id, key_prefix)

    def count_api_keys(self, tenant_id: str | None = None) -> int:
        """Number of keys of ``tenant_id``, or of all tenants if None."""
        with self._read() as conn:
            return key_queries.count(conn, tenant_id)

    def list_api_keys(self, tenant_id: str) -> list[ApiKeyRow]:
        """The tenant's keys, oldest first."""
        with self._read() as conn:
            return key_queries.list_for(conn, tenant_id)

    def delete_api_key(self, tenant_id: str, key_id: str, keep_last_admin: bool = False) -> bool:
        """Delete the tenant's key ``key_id``; False if the tenant has no such key. With
        ``keep_last_admin``, raises ``key_queries.LastAdminKey`` (a Conflict) rather than
        delete the tenant's only admin key."""
        with self._write() as conn:
            return key_queries.delete(conn, tenant_id, key_id, keep_last_admin)

    # -- agents -----------------------------------------------------------------

    def upsert_agent(
        self,
        tenant_id: str,
        name: str,
        path: str,
        env: Mapping[str, str],
        config: Mapping[str, Any] | None = None,
    ) -> AgentRow:
        """Insert version 1, or bump the version and replace path/env (config if given).

        Keeps id, created_at and active_version_id. Atomic: concurrent upserts of one
        name each get their own version number.
        """
        with self._write() as conn:
            return agent_queries.upsert(conn, tenant_id, name, path, env, config, self._clock())

    def get_agent(self, tenant_id: str, name: str) -> AgentRow | None:
        with self._read() as conn:
            return agent_queries.get(conn, tenant_id, name)

    def list_agents(self, tenant_id: str) -> list[AgentRow]:
        """The tenant's agents ordered by name."""
        with self._read() as conn:
            return agent_queries.list_for(conn, tenant_id)

    def list_all_agents(self) -> list[AgentRow]:
        """Internal use (boot): the agents of every tenant."""
        with self._read() as conn:
            return agent_queries.list_for(conn, None)

    def set_agent_config(
        self, tenant_id: str, name: str, config: Mapping[str, Any] | None
    ) -> AgentRow | None:
        """Replace the agent's config without bumping its version; None if no agent."""
        with self._write() as conn:
            return agent_queries.set_config(conn, tenant_id, name, config, self._clock())

    def delete_agent(self, tenant_id: str, name: str) -> bool:
        """Delete the agent with its sessions, messages and events; False if absent."""
        with self._write() as conn:
            return agent_queries.delete(conn, tenant_id, name)

    # -- sessions ---------------------------------------------------------------

    def create_session(
        self,
        tenant_id: str,
        session_id: str,
        agent_name: str,
        status: str,
        sandbox_id: str | None = None,
        model: str | None = None,
        config: Mapping[str, Any] | None = None,
        parent_session_id: str | None = None,
        *,
        runner_id: str | None = None,
        status_reason: str | None = None,
    ) -> SessionRow:
        """Insert a session (created_at = last_active_at = now). Conflict if the id exists."""
        now = self._clock()
        row = SessionRow(
            session_id, tenant_id, agent_name, sandbox_id, status, runner_id,
            parent_session_id, model, None if config is None else dict(config), now, now, status_reason,
        )
        with self._raw_write() as cursor:
            raw_writes.insert_session(self._raw, cursor, row)
        return row

    def get_session(self, tenant_id: str, session_id: str) -> SessionRow | None:
        with self._read() as conn:
            return session_queries.get(conn, tenant_id, session_id)

    def get_session_any_tenant(self, session_id: str) -> SessionRow | None:
        """Internal use only (runners, boot): the session whatever its tenant."""
        with self._read() as conn:
            return session_queries.get(conn, None, session_id)

    def list_sessions(
        self, tenant_id: str, agent_name: str | None = None, status: str | None = None
    ) -> list[SessionRow]:
        """The tenant's sessions, newest first, optionally filtered."""
        with self._read() as conn:
            return session_queries.list_for(conn, tenant_id, agent_name, status)

    def update_session(
        self,
        tenant_id: str,
        session_id: str,
        *,
        status: str | Unset = UNSET,
        sandbox_id: str | Unset | None = UNSET,
        runner_id: str | Unset | None = UNSET,
        model: str | Unset | None = UNSET,
        config: Mapping[str, Any] | Unset | None = UNSET,
        status_reason: str | Unset | None = UNSET,
        touch: bool = True,
    ) -> SessionRow | None:
        """Set only the given fields (None clears); ``touch`` sets last_active_at = now.

        Returns the updated row, or None if the tenant has no such session.
        """
        given = {"status": status, "sandbox_id": sandbox_id, "runner_id": runner_id,
                 "model": model, "config": config, "status_reason": status_reason}
        changes = {k: v for k, v in given.items() if v is not UNSET}
        if touch:
            changes["last_active_at"] = self._clock()
        with self._write() as conn:
            return session_queries.update(conn, tenant_id, session_id, changes)

    def set_session_status(self, tenant_id: str, session_id: str, status: str,
                           status_reason: str | None) -> SessionRow | None:
        """``update_session(status=, status_reason=, touch=True)`` for the lifecycle path (a
        pause, a resume: one statement on the driver's connection). The updated row, or None
        if the tenant has no such session."""
        now = self._clock()
        with self._raw_write() as cursor:
            return raw_writes.set_session_status(self._raw, cursor, tenant_id, session_id, status, status_reason, now)

    def delete_session(self, tenant_id: str, session_id: str) -> bool:
        """Delete a session row (its messages, events and transcript go with it)."""
        with self._write() as conn:
            deleted = session_queries.delete(conn, tenant_id, session_id)
        self._seqs.forget(tenant_id, session_id)
        return deleted

    def list_sessions_by_status(self, statuses: Iterable[str]) -> list[SessionRow]:
        """Internal use (boot): sessions of all tenants in any of ``statuses``."""
        with self._read() as conn:
            return session_queries.list_by_status(conn, statuses)

    def count_sessions_with_status(self, status: str) -> int:
        """Internal use (the opt-in public /health figures): sessions of all tenants in ``status``."""
        with self._read() as conn:
            return session_queries.count_with_status(conn, status)

    # -- sandboxes (internal, all tenants) ------------------------------------------

    def upsert_sandbox(self, row: SandboxRow) -> SandboxRow:
        """Insert, or overwrite all columns but id and created_at; returns the stored row."""
        with self._write() as conn:
            return sandbox_queries.upsert(conn, row)

    def get_sandbox(self, sandbox_id: str) -> SandboxRow | None:
        with self._read() as conn:
            return sandbox_queries.get(conn, sandbox_id)

    def set_sandbox_state(self, sandbox_id: str, state: str, *, touch: bool = False) -> bool:
        """Set the state (and last_used_at = now if ``touch``); False if no such row."""
        used_at = self._clock() if touch else None
        with self._write() as conn:
            return sandbox_queries.set_state(conn, sandbox_id, state, used_at)

    def delete_sandbox(self, sandbox_id: str) -> bool:
        with self._write() as conn:
            return sandbox_queries.delete(conn, sandbox_id)

    def list_sandboxes(self, state: str | None = None) -> list[SandboxRow]:
        """Sandboxes (optionally in ``state``), least recently used first."""
        with self._read() as conn:
            return sandbox_queries.list_all(conn, state)

    def warm_session_ids(self) -> set[str]:
        """Sessions whose sandbox is live (its state is not cold); an active session not among
        them is parked (its next message wakes it)."""
        with self._read() as conn:
            return sandbox_queries.session_ids_not_in(conn, "cold")

    def mark_all_sandboxes(self, state: str) -> int:
        """Boot: put every sandbox row in ``state`` (e.g. cold); returns the count."""
        with self._write() as conn:
            return sandbox_queries.mark_all(conn, state)

    # -- usage (model proxy metering; ashd/store/usage.py) ----------------------------

    def record_usage(self, tenant_id: str, session_id: str, agent_name: str, values: dict[str, float]) -> None:
        """Insert one usage event per metric (``usage.EVENT_TYPES``) now."""
        rows = raw_writes.usage_rows(tenant_id, session_id, agent_name, values, self._clock())
        with self._raw_write() as cursor:
            raw_writes.insert_usage(self._raw, cursor, rows)

    def queue_usage(self, tenant_id: str, session_id: str, agent_name: str, values: dict[str, float]) -> None:
        """:meth:`record_usage` with the next turn's last commit (``append_log(..., usage=True)``)
        or :meth:`write_queued_usage`, whichever comes first (``usage_queue.py``). Never blocks."""
        self._usage.put(raw_writes.usage_rows(tenant_id, session_id, agent_name, values, self._clock()))

    def queued_usage(self) -> int:
        """How many usage rows are queued (:meth:`queue_usage`), not yet written. Never blocks."""
        return len(self._usage)

    def write_queued_usage(self) -> int:
        """Insert every queued usage row in one transaction (put back if it fails); how many."""
        with self._taking_usage() as rows:
            if rows:
                with self._raw_write() as cursor:
                    raw_writes.insert_usage(self._raw, cursor, rows)
            return len(rows)

    def list_usage(self, flt: usage.UsageFilter) -> list[dict[str, Any]]:
        with self._read() as conn:
            return usage.list_events(conn, flt)

    def usage_stats(self, flt: usage.UsageFilter) -> dict[str, float]:
        with self._read() as conn:
            return usage.stats(conn, flt)

    def analytics_summary(self, tenant_id: str, window: analytics.Window) -> dict[str, Any]:
        """The tenant's figures over ``window`` (``GET /api/analytics``; ``analytics.py``)."""
        with self._read() as conn:
            return analytics.summary(conn, tenant_id, window)

    # -- credentials (ashd/store/credential_queries.py) -------------------------------

    def add_credential(self, row: credential_queries.CredentialRow) -> credential_queries.CredentialRow:
        """Insert a sealed credential (the caller chose its id and sealed it for that id);
        created_at is set to now. Returns the stored row."""
        row = dataclasses.replace(row, created_at=self._clock())
        with self._write() as conn:
            credential_queries.insert(conn, row)
        return row

    def get_credential(self, tenant_id: str, credential_id: str) -> credential_queries.CredentialRow | None:
        with self._read() as conn:
            return credential_queries.get(conn, tenant_id, credential_id)

    def list_credentials(self, tenant_id: str) -> list[credential_queries.CredentialRow]:
        """The tenant's credentials, oldest first."""
        with self._read() as conn:
            return credential_queries.list_for(conn, tenant_id)

    def delete_credential(self, tenant_id: str, credential_id: str) -> bool:
        """False if the tenant has no such credential."""
        with self._write() as conn:
            return credential_queries.delete(conn, tenant_id, credential_id)

    def touch_credential(self, tenant_id: str, credential_id: str) -> None:
        """Set last_used_at = now."""
        with self._write() as conn:
            credential_queries.touch(conn, tenant_id, credential_id, self._clock())

    # -- agent versions (ashd/store/version_queries.py) ---------------------------------

    def list_agent_versions(self, tenant_id: str, agent_name: str) -> list[version_queries.AgentVersionRow]:
        """The agent's versions by number."""
        with self._read() as conn:
            return version_queries.list_for(conn, tenant_id, agent_name)

    def get_agent_version(self, tenant_id: str, agent_name: str,
                          ref: version_queries.VersionRef) -> version_queries.AgentVersionRow | None:
        """By number (int) or id (str)."""
        with self._read() as conn:
            return version_queries.get(conn, tenant_id, agent_name, ref)

    def create_agent_version(self, tenant_id: str, agent_name: str, fields: Mapping[str, Any],
                             created_by: str | None = None) -> version_queries.AgentVersionRow:
        """The next version number. Conflict if a concurrent create took the number."""
        with self._write() as conn:
            return version_queries.create(conn, tenant_id, agent_name, fields, created_by, self._clock())

    def update_agent_version(self, tenant_id: str, agent_name: str, ref: version_queries.VersionRef,
                             changes: Mapping[str, Any]) -> version_queries.AgentVersionRow | None:
        """Set the given columns (name, system_prompt, release_notes, knowledge_files)."""
        with self._write() as conn:
            return version_queries.update(conn, tenant_id, agent_name, ref, changes, self._clock())

    def delete_agent_version(self, tenant_id: str, agent_name: str, version_id: str) -> bool:
        with self._write() as conn:
            return version_queries.delete(conn, tenant_id, agent_name, version_id)

    def activate_agent_version(self, tenant_id: str, agent_name: str, version_id: str) -> bool:
        """Make it the only active version (and the agent's active_version_id); False if absent."""
        with self._write() as conn:
            return version_queries.activate(conn, tenant_id, agent_name, version_id, self._clock())

    def active_system_prompt(self, tenant_id: str, agent_name: str) -> str | None:
        """The active version's systemPrompt (None: no active version or no prompt)."""
        with self._read() as conn:
            return version_queries.active_prompt(conn, tenant_id, agent_name)

    def agent_and_prompt(self, tenant_id: str, name: str) -> tuple[AgentRow | None, str | None]:
        """``get_agent`` and, if it exists, ``active_system_prompt`` in one read transaction
        (a session create needs both: one pool checkout, one snapshot)."""
        with self._read() as conn:
            agent = agent_queries.get(conn, tenant_id, name)
            return agent, None if agent is None else version_queries.active_prompt(conn, tenant_id, name)

    def patch_agent(self, tenant_id: str, name: str, env: Mapping[str, str] | None,
                    config: Mapping[str, Any] | None) -> AgentRow | None:
        """PATCH /api/agents/:name: replace env and/or config (None keeps it), no version bump."""
        with self._write() as conn:
            return agent_queries.set_env_and_config(conn, tenant_id, name, env, config, self._clock())

    # -- attachments (ashd/store/attachment_queries.py) ---------------------------------

    def add_attachment(self, row: attachment_queries.AttachmentRow) -> attachment_queries.AttachmentRow:
        """Insert an attachment (the caller chose its id and stored its bytes); created_at is
        set to now. Raises StoreError if the session does not exist."""
        row = dataclasses.replace(row, created_at=self._clock())
        with self._write() as conn:
            return attachment_queries.insert(conn, row)

    def get_attachment(self, tenant_id: str, attachment_id: str) -> attachment_queries.AttachmentRow | None:
        with self._read() as conn:
            return attachment_queries.get(conn, tenant_id, attachment_id)

    def list_attachments(self, tenant_id: str, session_id: str) -> list[attachment_queries.AttachmentRow]:
        """The session's attachments, oldest first."""
        with self._read() as conn:
            return attachment_queries.list_for(conn, tenant_id, session_id)

    def delete_attachment(self, tenant_id: str, attachment_id: str) -> bool:
        with self._write() as conn:
            return attachment_queries.delete(conn, tenant_id, attachment_id)
