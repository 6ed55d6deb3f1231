"""The credential vault: stores tenants' upstream model keys sealed, and opens one for the
model proxy when a session's sandbox starts.

Plaintext keys exist only in the request that stores them and in the model proxy's gate of
the session using them; never in a sandbox's environment or files, never in a log line.
Every method blocks (database I/O, PBKDF2): call from an actor or through ``Offload``.
"""

from __future__ import annotations

import uuid

from ashd.config import Secret
from ashd.credentials import CREDENTIAL_TYPES, CredentialSealError, Sealed, seal, unseal
from ashd.errors import BadRequest, Conflict, SandboxFailed
from ashd.store import Store
from ashd.store.credential_queries import CredentialRow

MAX_KEY_BYTES = 16 * 1024
MAX_LABEL_CHARS = 255
# Only these types can stand in for the daemon's key at the model proxy (x-api-key).
SESSION_TYPES = ("anthropic",)
NO_KEY = ("ASH_CREDENTIAL_KEY is not set on this ashd: the operator must set it (a long random "
          "secret, kept stable) and restart ashd before credentials can be stored")


class CredentialVault:
    def __init__(self, store: Store, master: Secret) -> None:
        self._store = store
        self._master = master

    def seal_new(self, tenant_id: str, type_: object, key: object, label: object) -> CredentialRow:
        """Validate and seal a new credential (no I/O; ~0.1 s of PBKDF2): store the row with
        ``Store.add_credential``. Raises BadRequest (the field to fix) or Conflict (no
        ASH_CREDENTIAL_KEY)."""
        if type_ not in CREDENTIAL_TYPES:
            raise BadRequest(f"type must be one of {', '.join(CREDENTIAL_TYPES)}")
        if not isinstance(key, str) or not key.strip():
            raise BadRequest("key must be a non-empty string (the upstream API key)")
        # Printable (JSON whitespace allowed, for bedrock's JSON); lone surrogates cannot be stored.
        if not all(c.isprintable() or c in "\n\r\t" for c in key) or len(key.encode(errors="replace")) > MAX_KEY_BYTES:
            raise BadRequest(f"key must be printable text of at most {MAX_KEY_BYTES} bytes")
        if label is not None and (not isinstance(label, str) or len(label) > MAX_LABEL_CHARS):
            raise BadRequest(f"label must be a string of at most {MAX_LABEL_CHARS} characters")
        if not self._master:
            raise Conflict(NO_KEY)  # not a 5xx: nothing failed, the server is not set up for this
        row_id = str(uuid.uuid4())
        sealed = seal(self._master.reveal(), key, tenant_id, row_id)
        return CredentialRow(row_id, tenant_id, str(type_), sealed.encrypted_key, sealed.iv, sealed.auth_tag,
                             sealed.salt, label or "", True, "", None)  # created_at: the store's clock

    def check_for_session(self, tenant_id: str, credential_id: str) -> CredentialRow:
        """The credential a new session asks for, if it can serve one. Raises BadRequest."""
        row = self._store.get_credential(tenant_id, credential_id)
        if row is None:
            raise BadRequest(f"bad credential: {credential_id} is not a credential of this tenant")
        if not row.active:
            raise BadRequest(f"bad credential: {credential_id} is inactive")
        if row.type not in SESSION_TYPES:
            raise BadRequest(f"bad credential: {credential_id} is of type {row.type}; sessions accept "
                             f"{', '.join(SESSION_TYPES)} credentials")
        if not self._master:
            raise BadRequest(f"bad credential: {NO_KEY}")
        return row

    def open_for_session(self, tenant_id: str, credential_id: str) -> Secret:
        """The plaintext key for the model proxy (and last_used_at = now). Raises SandboxFailed
        when it is gone, inactive or does not decrypt: the session cannot start with it."""
        row = self._store.get_credential(tenant_id, credential_id)
        if row is None or not row.active:
            raise SandboxFailed(f"credential {credential_id} of this session was deleted or deactivated; "
                                "create a new session with another credentialId")
        try:
            sealed = Sealed(row.encrypted_key, row.iv, row.auth_tag, row.salt)
            plain = unseal(self._master.reveal(), sealed, tenant_id, row.id)
        except CredentialSealError as exc:
            raise SandboxFailed(f"credential {credential_id}: {exc}") from None
        self._store.touch_credential(tenant_id, credential_id)
        return Secret(plain)

