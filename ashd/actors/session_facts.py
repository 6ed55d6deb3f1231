"""What the store says about a sandbox's session, as the pool's decisions need it (pool actor
thread). A read that fails answers the safe way: not a pre-warm, keep it warm, do not move it."""

from __future__ import annotations

import logging

from ashd.sandbox.launcher import SandboxSpec
from ashd.store import Store, StoreError

log = logging.getLogger(__name__)


class SessionFacts:
    def __init__(self, store: Store) -> None:
        self._store = store

    def unclaimed(self, spec: SandboxSpec) -> bool:
        """A pre-warm: no session row (a create inserts its row before its sandbox starts)."""
        try:
            return self._store.get_session(spec.tenant_id, spec.session_id) is None
        except StoreError:
            return False

    def keep_warm(self, spec: SandboxSpec) -> bool:
        """A pre-warm (no session row), a session that is not active, or one with prompts
        waiting in the queue stays warm."""
        try:
            row = self._store.get_session(spec.tenant_id, spec.session_id)
            return (row is None or row.status != "active"
                    or self._store.has_queued_prompts(spec.tenant_id, spec.session_id))
        except StoreError as exc:
            log.warning("sandbox %s not parked: its session could not be read: %s", spec.sandbox_id, exc)
            return True

    def queued(self, spec: SandboxSpec) -> bool:
        """Prompts of the session wait in the queue (a sandbox is not moved then)."""
        try:
            return self._store.has_queued_prompts(spec.tenant_id, spec.session_id)
        except StoreError as exc:
            log.warning("sandbox %s not moved: its queue could not be read: %s", spec.sandbox_id, exc)
            return True
