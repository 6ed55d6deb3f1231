"""/api/api-keys (the tenant's own keys, admin scope) and /api/internal/api-keys (an operator
mints a key for any tenant, guarded by ASH_INTERNAL_SECRET; disabled when it is unset).

Only hashes are stored: a key's plaintext appears once, in the response that created it.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from ashd.errors import BadRequest, Conflict, NotFound
from ashd.http import scopes
from ashd.http.auth import DEFAULT_TENANT, key_prefix, new_key
from ashd.http.base import ApiHandler
from ashd.http.internal import InternalHandler
from ashd.store import ApiKeyRow
from ashd.store.key_queries import LastAdminKey

TENANT_ID = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
MAX_LABEL = 200
ENV_KEY_ID = "env"


def key_json(row: ApiKeyRow) -> dict[str, Any]:
    """``keyPrefix`` is None for keys minted before ashd stored prefixes (only hashes were kept)."""
    return {"id": row.id, "tenantId": row.tenant_id, "label": row.label,
            "scopes": scopes.render(scopes.parse(row.scopes)), "createdAt": row.created_at,
            "keyPrefix": row.key_prefix}


def check_tenant_id(value: object) -> str:
    if not isinstance(value, str) or not TENANT_ID.match(value):
        raise BadRequest("tenantId is required: 1-128 characters of letters, digits, '_' or '-'")
    return value


def check_fields(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")


def check_label(value: object, default: str) -> str:
    if value is None:
        return default
    if not isinstance(value, str) or len(value) > MAX_LABEL:
        raise BadRequest(f"label must be a string of at most {MAX_LABEL} characters")
    return value


class KeyMinting(ApiHandler):
    async def mint(self, tenant_id: str, label: str, granted: frozenset[str]) -> tuple[ApiKeyRow, str]:
        """Store a new key's hash; returns its row and the plaintext (shown once)."""
        key = new_key()
        digest = self.ctx.hasher.hashes(key)[0]
        row = await self.ctx.offload.write(self.ctx.store.add_api_key, tenant_id, digest, label,
                                           " ".join(scopes.render(granted)), key_prefix(key))
        return row, key


class ApiKeysHandler(KeyMinting):
    """GET, POST /api/api-keys: the caller's tenant's keys."""

    required_scope = scopes.ADMIN

    async def get(self) -> None:
        rows = await self.ctx.offload.read(self.ctx.store.list_api_keys, self.tenant)
        keys = [key_json(r) for r in rows]
        env_key = self.ctx.config.auth.api_key.reveal()
        if env_key and self.tenant == DEFAULT_TENANT:
            # ASH_API_KEY has no row: it is in force since this ashd started with it.
            keys.insert(0, {"id": ENV_KEY_ID, "tenantId": DEFAULT_TENANT, "label": "ASH_API_KEY",
                            "scopes": scopes.render(scopes.OPERATOR), "createdAt": self.ctx.started_utc,
                            "keyPrefix": key_prefix(env_key)})
        self.send_json({"keys": keys})

    async def post(self) -> None:
        body = self.json_body()
        check_fields(body, {"label", "scopes"})
        label = check_label(body.get("label"), "")
        granted = scopes.from_request(body.get("scopes"), self.principal.scopes)
        row, key = await self.mint(self.tenant, label, granted)
        self.send_json({"id": row.id, "key": key, "label": row.label, "scopes": scopes.render(granted),
                        "createdAt": row.created_at, "keyPrefix": row.key_prefix}, status=201)


class ApiKeyHandler(ApiHandler):
    """DELETE /api/api-keys/:id (another tenant's key: 404)."""

    required_scope = scopes.ADMIN

    async def delete(self, key_id: str) -> None:
        if key_id == ENV_KEY_ID and self.tenant == DEFAULT_TENANT and self.ctx.config.auth.api_key:
            raise BadRequest("The ASH_API_KEY entry cannot be deleted through the API; unset ASH_API_KEY "
                             "and restart ashd to revoke it")
        try:
            canonical = str(uuid.UUID(key_id))
        except ValueError:
            raise NotFound(f"API key {key_id} not found") from None
        # The key making this request may delete itself, unless no admin key would remain.
        self_delete = self.principal.key_id == canonical
        try:
            deleted = await self.ctx.offload.write(self.ctx.store.delete_api_key, self.tenant, canonical,
                                                   self_delete)
        except LastAdminKey:
            raise Conflict("This API key is the one making the request and the tenant's last admin key; "
                           "create another admin key first (POST /api/api-keys), then delete this one "
                           "with the new key") from None
        if not deleted:
            raise NotFound(f"API key {key_id} not found")
        self.ctx.keys.forget_key(canonical)  # revoked at once, before the 204
        self.set_status(204)
        self.finish()


class InternalApiKeysHandler(InternalHandler, KeyMinting):
    """POST /api/internal/api-keys: mint a key for any tenant (operator, Bearer ASH_INTERNAL_SECRET)."""

    async def post(self) -> None:
        body = self.json_body()
        check_fields(body, {"tenantId", "label", "scopes"})
        tenant_id = check_tenant_id(body.get("tenantId"))
        label = check_label(body.get("label"), f"platform-{tenant_id}")
        granted = scopes.from_request(body.get("scopes"), frozenset({scopes.ADMIN}), operator=True)
        row, key = await self.mint(tenant_id, label, granted)
        self.send_json({"id": row.id, "key": key, "tenantId": row.tenant_id, "label": row.label,
                        "scopes": scopes.render(granted), "keyPrefix": row.key_prefix}, status=201)
