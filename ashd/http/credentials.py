"""/api/credentials: store, list and delete tenants' upstream model keys (admin scope).

Responses never carry the secret, sealed or not.
"""

from __future__ import annotations

import uuid
from typing import Any

from ashd.errors import BadRequest, NotFound
from ashd.http import scopes
from ashd.http.base import ApiHandler
from ashd.store.credential_queries import CredentialRow
from ashd.store.vault import CredentialVault

MAX_CREDENTIAL_BODY = 64 * 1024


def credential_json(row: CredentialRow) -> dict[str, Any]:
    return {"id": row.id, "type": row.type, "label": row.label, "active": row.active,
            "createdAt": row.created_at, "lastUsedAt": row.last_used_at}


class CredentialBase(ApiHandler):
    required_scope = scopes.ADMIN  # every method, listing included
    max_body = MAX_CREDENTIAL_BODY

    @property
    def vault(self) -> CredentialVault:
        return CredentialVault(self.ctx.store, self.ctx.config.auth.credential_key)


class CredentialsHandler(CredentialBase):
    async def post(self) -> None:
        body = self.json_body()
        unknown = sorted(set(body) - {"type", "key", "label"})
        if unknown:
            raise BadRequest(f"unknown credential field(s): {', '.join(unknown)}; give type, key and label")
        # Sealing (PBKDF2) runs on a reader thread so it never holds up the single writer.
        sealed = await self.ctx.offload.read(self.vault.seal_new, self.tenant, body.get("type"), body.get("key"),
                                             body.get("label"))
        row = await self.ctx.offload.write(self.ctx.store.add_credential, sealed)
        self.send_json({"credential": credential_json(row)}, status=201)

    async def get(self) -> None:
        rows = await self.ctx.offload.read(self.ctx.store.list_credentials, self.tenant)
        self.send_json({"credentials": [credential_json(r) for r in rows]})


class CredentialHandler(CredentialBase):
    async def delete(self, raw_id: str) -> None:
        try:
            credential_id = str(uuid.UUID(raw_id))
        except ValueError:
            raise NotFound(f"Credential {raw_id} not found") from None
        if not await self.ctx.offload.write(self.ctx.store.delete_credential, self.tenant, credential_id):
            raise NotFound(f"Credential {raw_id} not found")
        self.set_status(204)
        self.finish()
